"""Simulated tasks used in the book (gymnasium environments)."""

from gymnasium.envs.registration import register

for _name, _layout, _steps in (("UMaze", "umaze", 300), ("Medium", "medium", 600), ("Large", "large", 800)):
    register(
        id=f"tutorial_lib/PointMaze-{_name}-v0",
        entry_point="tutorial_lib.envs.maze:PointMazeEnv",
        kwargs={"layout": _layout},
        max_episode_steps=_steps,
    )

register(id="tutorial_lib/PushT-v0", entry_point="tutorial_lib.envs.pusht:PushTEnv")
