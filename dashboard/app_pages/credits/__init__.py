"""Credits (finance): an organization's balance, burn rate and runway; its ledger
(filtered, paginated, downloadable); adjusting credits and reversing ledger entries;
the queue of adjustments waiting for a second person, and approving or rejecting them;
bulk adjustments from a CSV; the organization's grants (what remains of each, its
expiry and priority) and every organization's credits expiring in the next 30 days.

``page.py`` is the page Streamlit runs (it draws itself, so it is never imported); it
only composes the sections, one module each: :mod:`.adjust`, :mod:`.approvals`,
:mod:`.bulk`, :mod:`.grants`, :mod:`.ledger` and :mod:`.reversal`. Every write goes
through the one review-then-confirm flow (:class:`dashboard.confirm.WriteFlow`): a form is checked into
a request (nothing is written), then the request is confirmed with the balance before
and after.

The adjustment form leads the page, right under the balance, so an "Adjust" link from
another page is ``credits?org=ID``.
"""

from typing import Final

FLASH: Final = "credits"  # every section's outcome is shown at the top of the page
