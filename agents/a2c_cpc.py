"""A2C with the CPC auxiliary loss on MiniWorld: `python -m agents.a2c_cpc --env MiniWorld-FourRooms-v0`.

`--no-cpc` trains the same agent without the auxiliary loss; `--help` lists every flag. See agents/train.py for
what a run writes and how to resume it.
"""

from agents.train import main

if __name__ == "__main__":
    main("a2c")
