"""Simulated tasks used in the book (gymnasium environments)."""

from gymnasium.envs.registration import register

register(id="tutorial_lib/PushT-v0", entry_point="tutorial_lib.envs.pusht:PushTEnv")
