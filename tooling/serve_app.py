"""``python -m tooling.serve_app APP [streamlit options]``: ``streamlit run APP`` with the
dashboard's start-up work done in the background as the server starts
(:mod:`dashboard.warmup`: the imports, the pages compiled, the default view read), so
visitors do not wait for imports, compiling or cold reads; one who comes at once gets
the app's progress sign within a second and shares the imports already under way.
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
