"""`python -m ingest PATHS --index DIR`: the same command as `ragapp ingest`."""

from ragapp.cli import main

if __name__ == "__main__":
    main(["ingest", *__import__("sys").argv[1:]], prog_name="python -m ingest")
