"""NLRD Gradio app (placeholder until the app issue lands): shows the package version."""

from __future__ import annotations

import argparse

import gradio as gr

import nlrd


def build_app() -> gr.Blocks:
    with gr.Blocks(title="NLRD") as demo:
        gr.Markdown(f"# NLRD {nlrd.__version__}\nThe full app arrives with the inference and app issues.")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="NLRD app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    build_app().launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
