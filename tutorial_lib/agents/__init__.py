"""Methods that act: Diffuser and its planner, the Push-T diffusion policy, MPPI and maze behaviour cloning."""
