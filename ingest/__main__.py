"""`python -m ingest PATHS --index DIR`: the same command as `ragapp ingest`."""

from ingest.cli import ingest_command
from ragapp.cli import run_command

if __name__ == "__main__":
    run_command(ingest_command, "python -m ingest")
