"""How --workers feed the parent's live view: events and lines through one queue, in order, and a
worker's put that lands inside another (a signal handler's note) neither deadlocks nor is lost."""

import queue
from types import SimpleNamespace

from tunekit.study.workers import _relay, _Sender


def test_the_parent_hands_events_to_the_view_and_lines_above_it_in_order():
    q = queue.Queue()
    for item in ({"kind": "start", "trial": 0}, {"kind": "note", "line": "[w1] stopping"}, {"kind": "end", "trial": 0}):
        q.put(item)
    seen = []
    opts = SimpleNamespace(
        events=lambda e: seen.append(("event", e["kind"])), log=lambda line: seen.append(("line", line))
    )
    _relay(q, opts, 0.1)
    assert seen == [("event", "start"), ("line", "[w1] stopping"), ("event", "end")]
    _relay(q, opts, 0)  # nothing left: returns at once
    assert len(seen) == 3


def test_a_put_from_inside_a_put_is_sent_after_it_not_nested():
    sent = []

    class Queue:  # a signal handler's note arriving while the worker's main thread is inside put()
        def put(self, item):
            if item["kind"] == "epoch" and not sent:
                sender.put({"kind": "note", "line": "stopping"})
            sent.append(item["kind"])

    sender = _Sender(Queue())
    sender.put({"kind": "epoch"})
    sender.put({"kind": "end"})
    assert sent == ["epoch", "note", "end"]
