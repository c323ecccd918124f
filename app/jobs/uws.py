"""The UWS 1.1 XML documents: a job, the job list, a job's results and parameters.

Elements are in the UWS namespace ``http://www.ivoa.net/xml/UWS/v1.0`` in the order of the UWS
1.1 schema (``jobId``, ``runId``, ``ownerId``, ``phase``, ``quote``, ``creationTime``,
``startTime``, ``endTime``, ``executionDuration``, ``destruction``, ``parameters``, ``results``,
``errorSummary``, ``jobInfo``); an unknown value is ``xsi:nil="true"``. Times are UTC with
milliseconds and a ``Z`` (DALI's civil times). ``jobInfo`` holds the progress as plain child
elements (``targets``, ``targetsDone``, ``cutouts``, ``cutoutsDone``, ``ok``, ``skipped``,
``errors``, ``resultBytes``), which pyvo's parser exposes by name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app.jobs.store import JobRecord

__all__ = ["UWS_NS", "ResultRef", "iso_time", "job_document", "job_list_document", "parameters_document",
           "results_document"]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ET.register_namespace("uws", UWS_NS)
ET.register_namespace("xlink", XLINK_NS)
ET.register_namespace("xsi", XSI_NS)

_NIL = {f"{{{XSI_NS}}}nil": "true"}
#: the progress counters of ``jobInfo``: element name -> key of ``JobRecord.progress``
PROGRESS = (("targets", "targets"), ("targetsDone", "targets_done"), ("cutouts", "rows"),
            ("cutoutsDone", "rows_done"), ("ok", "ok"), ("skipped", "skipped"), ("errors", "errors"),
            ("resultBytes", "bytes"))


@dataclass(frozen=True)
class ResultRef:
    """One entry of a job's results list."""

    id: str
    href: str
    mime_type: str
    size: int | None = None


def iso_time(t: float | None) -> str | None:
    """Unix seconds as ``YYYY-MM-DDThh:mm:ss.SSSZ``."""
    if t is None:
        return None
    when = datetime.fromtimestamp(t, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _q(name: str) -> str:
    return f"{{{UWS_NS}}}{name}"


def _add(parent: ET.Element, name: str, text: str | None, *, nillable: bool = True) -> ET.Element:
    if text is None and nillable:
        return ET.SubElement(parent, _q(name), _NIL)
    element = ET.SubElement(parent, _q(name))
    element.text = "" if text is None else text
    return element


def _bytes(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _number_text(value: float) -> str:
    """A float as written back to the client: whole numbers short (``6``), others exactly (``repr``)."""
    return f"{value:g}" if value.is_integer() else repr(value)


def _parameters(parent: ET.Element, record: JobRecord, targets_href: str) -> ET.Element:
    element = ET.SubElement(parent, _q("parameters"))
    params = record.params

    def add(name: str, value: str, **attrs: str) -> None:
        node = ET.SubElement(element, _q("parameter"), {"id": name, **attrs})
        node.text = value

    for name in ("x", "y", "units", "product", "time_min", "time_max", "frame_bin"):
        if name in params:
            add(name, _number_text(params[name]) if isinstance(params[name], float) else str(params[name]))
    for sector in params.get("sectors") or ():
        add("sector", str(sector))
    if params.get("source"):
        add("targets", targets_href, byReference="true")
    return element


def _results(parent: ET.Element | None, results: Sequence[ResultRef]) -> ET.Element:
    element = ET.Element(_q("results")) if parent is None else ET.SubElement(parent, _q("results"))
    for ref in results:
        attrs = {"id": ref.id, f"{{{XLINK_NS}}}type": "simple", f"{{{XLINK_NS}}}href": ref.href,
                 "mime-type": ref.mime_type}
        if ref.size is not None:
            attrs["size"] = str(ref.size)
        ET.SubElement(element, _q("result"), attrs)
    return element


def job_document(record: JobRecord, *, results: Sequence[ResultRef], targets_href: str) -> bytes:
    """The ``<uws:job>`` document of ``record``."""
    root = ET.Element(_q("job"), {"version": "1.1"})
    _add(root, "jobId", record.job_id, nillable=False)
    if record.run_id:
        _add(root, "runId", record.run_id, nillable=False)
    _add(root, "ownerId", record.owner or None)
    _add(root, "phase", str(record.phase), nillable=False)
    _add(root, "quote", None)
    _add(root, "creationTime", iso_time(record.created), nillable=False)
    _add(root, "startTime", iso_time(record.started))
    _add(root, "endTime", iso_time(record.ended))
    _add(root, "executionDuration", str(int(record.execution_duration)), nillable=False)
    _add(root, "destruction", iso_time(record.destruction))
    _parameters(root, record, targets_href)
    _results(root, results)
    if record.error:
        summary = ET.SubElement(root, _q("errorSummary"), {"type": "fatal", "hasDetail": "true"})
        _add(summary, "message", record.error, nillable=False)  # the whole message: GET {job}/error
    info = ET.SubElement(root, _q("jobInfo"))
    for name, key in PROGRESS:
        ET.SubElement(info, name).text = str(int(record.progress.get(key, 0)))
    return _bytes(root)


def job_list_document(records: Iterable[JobRecord], base_url: str) -> bytes:
    """The ``<uws:jobs>`` list: one ``jobref`` per record (phase, runId, ownerId, creationTime)."""
    root = ET.Element(_q("jobs"), {"version": "1.1"})
    for record in records:
        ref = ET.SubElement(root, _q("jobref"), {"id": record.job_id, f"{{{XLINK_NS}}}type": "simple",
                                                  f"{{{XLINK_NS}}}href": f"{base_url}/{record.job_id}"})
        _add(ref, "phase", str(record.phase), nillable=False)
        if record.run_id:
            _add(ref, "runId", record.run_id, nillable=False)
        _add(ref, "ownerId", record.owner or None)
        _add(ref, "creationTime", iso_time(record.created), nillable=False)
    return _bytes(root)


def results_document(results: Sequence[ResultRef]) -> bytes:
    """The ``<uws:results>`` document."""
    return _bytes(_results(None, results))


def parameters_document(record: JobRecord, targets_href: str) -> bytes:
    """The ``<uws:parameters>`` document."""
    holder = ET.Element("holder")
    return _bytes(_parameters(holder, record, targets_href))
