"""`python -m rl.sac`: train SAC online and save its actor as a behaviour policy (the code is in `rl.online`)."""

from rl.online.loop import main

if __name__ == "__main__":
    main()
