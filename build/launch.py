"""PyInstaller's entry script: the same entry point as the `patchscan` console script."""

from patchscan.cli import entry

if __name__ == "__main__":
    entry()
