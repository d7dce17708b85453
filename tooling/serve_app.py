"""``python -m tooling.serve_app APP [streamlit options]``: ``streamlit run APP`` with the
dashboard's start-up work done in the background as the server starts
(:mod:`dashboard.warmup`: imports, the pages compiled, the default view read), so the
first visitor gets the page at once instead of waiting for all of it.
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
    from streamlit.web import cli  # Streamlit's own imports first (warmup.import_modules)

    warmup.start_in_background()
    sys.argv = ["streamlit", "run", *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
