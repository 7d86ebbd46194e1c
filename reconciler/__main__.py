"""`python -m reconciler`: the same command as the `reconciler` script."""

from reconciler.cli.root import main

if __name__ == "__main__":
    main()
