"""``python -m tooling.serve_app APP [streamlit options]``: ``streamlit run APP`` with the
dashboard's start-up work done as the server starts (:mod:`dashboard.warmup`: the
imports before it listens, then the pages compiled and the default view read in the
background), so the first visitor gets the app's frame within a second of the server
answering and the page without waiting for imports or cold reads.
``dashboard serve`` starts the app this way."""

from __future__ import annotations

import logging
import sys

from dashboard import warmup


def main(argv: list[str]) -> None:
    # The warm-up's few lines (each step and its time) go to the server's log.
    log = logging.getLogger(warmup.__name__)
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    from streamlit.web import cli

    warmup.start()
    sys.argv = ["streamlit", "run", *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
