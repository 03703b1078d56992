"""Command line: `ragapp ask | search | info | ui`, plus the commands other packages register under the
"ragapp.commands" entry point group (`ragapp ingest` comes from ingest/). Results go to stdout;
progress and errors to stderr."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ragapp.display import print_confidence, print_pages, print_sources, show_pages, shown_path
from ragapp.errors import RagError

DEFAULT_INDEX = "data/index"


def open_rag(index: str, config_path: str | None, **overrides):
    """A RAG for the command line: environment prepared, config loaded with the options' overrides."""
    from ragapp.config import Config
    from ragapp.rag import RAG
    from ragapp.runtime import prepare_environment

    config = Config.load(config_path, **overrides)
    prepare_environment(config.threads)
    return RAG(index, config)


def _fail(exc: RagError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _registered() -> dict:
    """Commands front ends register (entry point group "ragapp.commands"): the library does not
    import its application packages; they plug in, and load only when their command runs."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="ragapp.commands")}


def run_command(command: click.Command, prog_name: str) -> None:
    """Run one command as a program of its own (`python -m ingest`), errors reported as by `ragapp`."""
    try:
        command.main(prog_name=prog_name, standalone_mode=False)
    except RagError as exc:
        _fail(exc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_registered()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in (found := _registered()):
            command = found[name].load()
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RagError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


index_option = click.option("--index", "index", default=DEFAULT_INDEX, show_default=True, type=click.Path(file_okay=False),
                            help="Index directory.")
config_option = click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False, exists=True),
                             help="TOML file with settings (docs/configuration.md).")




def model_options(command):
    """The chat model options `ask` and `eval` share."""
    for option in reversed([
        click.option("--model", "--llm-model", "model", default=None,
                     help="Chat model: a packaged name, a folder, a .gguf or hub id; with --llm-url, the server's model name."),
        click.option("--llm-backend", type=click.Choice(["transformers", "llama-cpp", "xllamacpp", "openai"]), default=None,
                     help="Where the chat model runs (default: the config's [generate] backend)."),
        click.option("--llm-url", default=None, help="Base URL of an OpenAI-compatible server (implies --llm-backend "
                                                    "openai), e.g. http://127.0.0.1:11434/v1 for Ollama."),
        click.option("--llm-key-env", default=None, help="NAME of the environment variable holding the server's API key."),
        click.option("--embed-model", default=None, help="Embedding model the index was built with.")]):
        command = option(command)
    return command


def open_with_model(index: str, config_path: str | None, model, llm_backend, llm_url, llm_key_env, embed_model):
    """A RAG with the chat model the options name."""
    backend = llm_backend or ("openai" if llm_url else None)
    return open_rag(index, config_path, generate__model=model, generate__backend=backend, generate__base_url=llm_url,
                    generate__api_key_env=llm_key_env, embed__model=embed_model)


@click.group(cls=_Group)
@click.version_option(package_name="ragapp")
def main() -> None:
    """ragapp: answers from your own documents, with citations, offline."""


@main.command()
@click.argument("question")
@index_option
@config_option
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Passages to consider and show.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option("--server", default=None, help="Ask a running `ragapp serve` (warm models) instead of loading them here; "
                                            "--index then names the knowledge base by its folder name.")
@click.option("--api-key-env", default="RAGAPP_API_KEYS", show_default=True,
              help="With --server: NAME of the environment variable holding the key (the first, if several).")
@click.option("--show", is_flag=True, help="Write each cited page as a PNG with the quote boxed, and print its path.")
@click.option("--show-dir", default=None, type=click.Path(file_okay=False),
              help="Where --show writes the pages (default: a ragapp-pages folder in the temporary directory).")
def ask(question, index, config_path, top_k, model, llm_backend, llm_url, llm_key_env, embed_model, as_json, server,
        api_key_env, show, show_dir) -> None:
    """Answer QUESTION from the indexed documents, with numbered citations."""
    if server and show:
        raise click.UsageError("--show draws pages from a local index; with --server, fetch "
                               "/v1/knowledge_bases/{kb}/documents/{name}/pages/{n}.png (docs/http-api.md)")
    if server:
        from ragapp.serve.client import ask_server

        ask_server(server, Path(index).name, question, top_k, os.environ.get(api_key_env, "").split(",")[0].strip(), as_json)
        return
    rag = open_with_model(index, config_path, model, llm_backend, llm_url, llm_key_env, embed_model)
    if as_json:
        answer = rag.ask(question, top_k=top_k)
        data = answer.to_dict()
        if show:
            for cited, shown in zip(data["citations"], show_pages(rag, answer.citations, show_dir)):
                cited["page_png"], cited["page_notice"] = shown or (None, "")
        click.echo(json.dumps(data, ensure_ascii=False, indent=1))
        return
    stream = rag.ask_stream(question, top_k=top_k)
    printed = False
    try:
        for piece in stream:
            click.echo(piece, nl=False)
            printed = True
    except RagError:
        if printed:  # end the partial line and say what it is; the error line follows on stderr
            click.echo(" [not an answer: the model stopped]")
        raise
    click.echo()
    answer = stream.answer
    print_confidence(answer.answered, answer.confidence, answer.draft)
    print_sources([c.to_dict() for c in answer.citations], answer.table.to_dict() if answer.table else None)
    if show:
        print_pages(show_pages(rag, answer.citations, show_dir))
    click.echo(f"({answer.timings_ms.get('total_ms', 0) / 1000:.1f} s)", err=True)


@main.command()
@click.argument("query")
@index_option
@config_option
@click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--embed-model", default=None, help="Embedding model the index was built with.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
def search(query, index, config_path, top_k, embed_model, as_json) -> None:
    """Ranked passages for QUERY after fusion and reranking, with each stage's score (no LLM)."""
    rag = open_rag(index, config_path, embed__model=embed_model)
    hits = rag.search(query, top_k=top_k)
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
        return
    if not hits:
        click.echo("no matching passages")
    for n, h in enumerate(hits, start=1):
        where = shown_path(h.chunk.source) + (f", {h.chunk.place}" if h.chunk.place else "")
        def fmt(v, spec):
            return "-" if v is None else format(v, spec)
        click.echo(f"{n:>2}. {where}  bm25 #{fmt(h.bm25_rank, 'd')} {fmt(h.bm25_score, '.2f')} | dense #{fmt(h.dense_rank, 'd')} "
                   f"{fmt(h.dense_score, '.3f')} | fused {fmt(h.fused_score, '.4f')} | rerank {fmt(h.rerank_score, '.3f')}")
        click.echo(f"    \"{' '.join(h.support_text.split())[:200]}\"")


@main.command()
@index_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON, including per-file records.")
def info(index, config_path, as_json) -> None:
    """Documents, chunks, models and settings of the index."""
    rag = open_rag(index, config_path)
    built_with = rag.manifest().embedding.get("model")  # info needs no model: read with the index's own
    if built_with != rag.config.embed.model:
        rag = open_rag(index, config_path, embed__model=built_with)
    data = rag.info().to_dict()
    from ragapp.watch import WatchStatus

    watched = WatchStatus.read(rag.path)
    if watched is not None:
        data["watch"] = {**watched.to_dict(), "alive": watched.alive}
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=1))
        return
    files = data.pop("files")
    for line in info_lines(data):
        click.echo(line)
    click.echo(f"documents ({len(files)}):")
    for source, rec in files.items():
        click.echo(f"  {shown_path(source)}  ({_count(rec['chunks'], 'chunk')})")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def info_lines(data: dict) -> list[str]:
    """`ragapp info` as a person reads it: one line per setting, times as dates, settings as key=value."""
    import time

    def shown(key: str, value) -> str:
        if key in ("created_at", "updated_at") and isinstance(value, (int, float)):
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        if key == "index":
            return shown_path(str(value))
        return str(value)

    return [f"{key.replace('_', ' ')}: {shown(key, value)}" for key, value in data.items() if key != "documents"]


@main.command(name="eval")
@index_option
@config_option
@click.option("--questions", type=click.IntRange(4, 2000), default=50, show_default=True,
              help="Questions to write from the documents (a quarter of them probes that must be refused).")
@click.option("--set", "set_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Run this saved or hand-written test set (JSONL) instead of writing one.")
@click.option("--compare", is_flag=True, help="Show each figure against the last run of the same set.")
@click.option("--apply", is_flag=True, help="Put the threshold fitted on this knowledge base in force for it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which chunks and documents are drawn.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_command(index, config_path, questions, set_file, compare, apply, seed, model, llm_backend, llm_url, llm_key_env,
                 embed_model, as_json) -> None:
    """How far to trust the answers on this knowledge base: write a test set from its documents, run it,
    fit the refusal threshold on it (docs/evaluate.md)."""
    from ragapp.evaluate import report_lines

    rag = open_with_model(index, config_path, model, llm_backend, llm_url, llm_key_env, embed_model)

    def progress(stage: str, done: int, total: int) -> None:
        if not as_json:
            click.echo(f"\r{stage}: {done}/{total}   ", nl=False, err=True)

    report = rag.evaluate(questions, set_path=set_file, apply=apply, seed=seed, progress=progress)
    if not compare:
        report.previous = None
    click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) if as_json else "\n".join(["", *report_lines(report)]))


@main.command()
@config_option
@click.option("--host", default=None, help="Address to serve on (default 127.0.0.1). Anything but loopback needs API keys.")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--knowledge-root", default=None, type=click.Path(file_okay=False),
              help="Folder whose sub-folders are the knowledge bases (default: [serve] knowledge_root, data).")
@click.option("--index", "index", default=None, type=click.Path(file_okay=False, exists=True),
              help="Serve this one index (built with `ragapp ingest … --index DIR`) as a knowledge base named after its folder.")
@click.option("--watch", "watch", multiple=True, metavar="[KB=]FOLDER",
              help="Keep knowledge base KB (default: index) in step with FOLDER while serving (repeatable).")
def serve(config_path, host, port, knowledge_root, index, watch) -> None:
    """Start the HTTP API: OpenAI-compatible chat with citations, search, knowledge bases (docs at /docs)."""
    import uvicorn

    from ragapp.config import Config
    from ragapp.runtime import prepare_environment
    from ragapp.serve import api_keys, create_app
    from ragapp.teams import UserStore

    if index and knowledge_root:
        raise click.UsageError("give --index or --knowledge-root, not both")
    config = Config.load(config_path, serve__host=host, serve__port=port, serve__knowledge_root=knowledge_root)
    prepare_environment(config.threads)
    root = Path(index).parent if index else Path(config.serve.knowledge_root)
    keys = api_keys(config.serve, config.serve.host, users=UserStore(root).has_users())
    try:
        app = create_app(config, keys, [_watched(item) for item in watch], Path(index) if index else None)
    except ValueError as exc:  # --index DIR that holds no index
        raise click.UsageError(str(exc)) from None
    click.echo(f"ragapp API on http://{config.serve.host}:{config.serve.port} (docs at /docs; "
               f"{'API keys required' if app.state.server.doorman.shared else 'no API key: loopback only'})", err=True)
    click.echo(_serving(app.state.server.kbs), err=True)
    uvicorn.run(app, host=config.serve.host, port=config.serve.port, log_level="warning", timeout_graceful_shutdown=5)


def _serving(kbs) -> str:
    """What a new server answers from, or how to give it something to answer from."""
    names = kbs.names()
    if names:
        return f"knowledge bases (the model names): {', '.join(names)}"
    return (f"no knowledge base under {shown_path(str(kbs.root))} yet: build one with `ragapp ingest FOLDER --index "
            f"{shown_path(str(kbs.root / 'NAME'))}`, serve an index you built with `ragapp serve --index DIR`, or create "
            "one with POST /v1/knowledge_bases")


@main.command()
@click.option("--index", default=None, type=click.Path(file_okay=False), help=f"Index directory (default: {DEFAULT_INDEX}).")
@click.option("--knowledge-root", default=None, type=click.Path(file_okay=False, exists=True),
              help="Serve every knowledge base under this folder instead (as `ragapp serve` does).")
@config_option
@click.option("--http", "http", is_flag=True, help="Streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --http. Anything but loopback needs API keys.")
@click.option("--port", type=int, default=8765, show_default=True, help="With --http.")
@click.option("--allow-ingest", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Offer the ingest_paths tool, for paths under this folder only (repeatable).")
def mcp(index, knowledge_root, config_path, http, host, port, allow_ingest) -> None:
    """Serve the documents to MCP clients (desktop assistants, editors, agents): ask, search, list_documents."""
    from ragapp.config import Config
    from ragapp.mcp_server import Shelf, build_server, run_http, run_stdio
    from ragapp.runtime import prepare_environment
    from ragapp.serve import api_keys
    from ragapp.teams import UserStore

    if index and knowledge_root:
        raise click.UsageError("give --index or --knowledge-root, not both")
    config = Config.load(config_path, serve__host=host, serve__port=port)
    prepare_environment(config.threads)
    root = Path(knowledge_root) if knowledge_root else Path(index or DEFAULT_INDEX).parent
    users = UserStore(root).has_users()
    keys = api_keys(config.serve, host, users=users) if http else frozenset()
    server = build_server(Shelf(config, index=None if knowledge_root else (index or DEFAULT_INDEX), root=knowledge_root),
                          allow_ingest)
    if not http:
        return run_stdio(server)
    click.echo(f"ragapp MCP server on http://{host}:{port}/mcp ({'API keys required' if keys or users else 'no API key: loopback only'})",
               err=True)
    run_http(server, config, keys, root)


def _watched(item: str) -> tuple[str, Path]:
    """`KB=FOLDER` or `FOLDER` (the default knowledge base, "index") of `serve --watch`."""
    from ragapp.knowledge import safe_name

    name, sep, folder = item.partition("=")
    name, folder = (name, folder) if sep and "/" not in name else ("index", item)
    try:
        if safe_name(name) != name:
            raise ValueError("not a plain folder name")
    except ValueError as exc:
        raise click.BadParameter(f"{name!r}: {exc}", param_hint="--watch") from exc
    if not Path(folder).is_dir():
        raise click.BadParameter(f"{folder}: not a folder", param_hint="--watch")
    return name, Path(folder)


@main.command()
@index_option
@config_option
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but loopback needs a password in RAGAPP_UI_PASSWORD.")
def ui(index, config_path, port, host) -> None:
    """Start the Streamlit chat app (this process becomes the Streamlit server: stopping it stops the app)."""
    from ragapp.config import Config
    from ragapp.net import is_loopback

    app = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    if not app.exists():
        raise click.ClickException(f"UI not found at {app}")
    if not is_loopback(host) and not os.environ.get("RAGAPP_UI_PASSWORD"):
        raise click.ClickException(f"--host {host} makes the app reachable from other machines: set a password in "
                                   "RAGAPP_UI_PASSWORD first (or keep the default 127.0.0.1)")
    config = Config.load(config_path)
    env = dict(os.environ, RAGAPP_INDEX=str(index), RAGAPP_CONFIG=str(Path(config_path).resolve()) if config_path else "")
    click.echo(f"ragapp UI on http://{host}:{port}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: a service manager's SIGTERM (or Ctrl-C) reaches Streamlit itself, and no
    # server is left running with its port bound when the wrapper goes away.
    os.execve(sys.executable, [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                               "--server.address", host, "--server.headless", "true",
                               "--server.maxUploadSize", str(config.ui.max_upload_mb),
                               "--client.showErrorDetails", "false", "--client.toolbarMode", "minimal",
                               "--browser.gatherUsageStats", "false"], env)


if __name__ == "__main__":
    main()
