"""`python -m reconciler`: the same command as the `reconciler` script."""

from reconciler.cli import main

if __name__ == "__main__":
    main()
