"""Async cutout jobs (IVOA UWS 1.1) run on Dask: parameters, the store on disk, the runner, the
UWS documents and the results. :class:`app.jobs.service.JobService` is what the router uses."""

from app.jobs.service import JobService

__all__ = ["JobService"]
