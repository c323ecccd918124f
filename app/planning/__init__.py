"""The service layer: what a request asks for, planned without HTTP.

Each route family has one module of typed planning functions (:mod:`.tesscut`, :mod:`.moving`,
:mod:`.images`, :mod:`.preview`) that take parsed parameters and a :class:`.context.Context`
(catalog snapshot, limits, budgets' sizes) and return an answer from :mod:`.answers`:
:class:`~.answers.NoData`, :class:`~.answers.FileAnswer` or :class:`~.answers.ZipAnswer`. The
routers only parse, call a planner on the worker pool, and hand the answer to
:mod:`app.streaming`; the planners are tested without HTTP.
"""
