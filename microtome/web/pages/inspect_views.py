"""The inspect pages of a model: `/models/M/inspect` (form), `POST` it (a job), `/models/M/inspect/JOB`.

- `form(state, model)`: the form (upload a photo or pick a sample; layers, groups, preset) and
  this model's recent inspections.
- `start(state, model, image, sample, layers, groups, preset)` (`POST`; the server reads the
  multipart body in memory, 413 over `MAX_UPLOAD`): checks the form (torch-free), decodes the
  upload in memory (`photo.decode`: 415 not an image, 413 too many pixels) and starts an
  inspection (`state.inspector`, jobs/inspect_jobs.py: one at a time, 503 when busy); answers
  202 (`Accepted`): JSON `{"job", "status_url", "url"}`, or the job's page with its progress.
- `job(state, model, job)`: the job's status `{"job", "state", "phase", "progress", "error",
  "request", "status_url", ...}`; once done, `result` (inspect_page.py) in the issue's shape
  `{"predictions", "layers": {L: {"groups", "dictionary", "grid", "attribution"}}, ...}`.
- `file(state, model, job, name)`: one of the job's PNGs, from memory.
"""

from __future__ import annotations

import time

from starlette.responses import Response

from microtome.errors import MicrotomeError, NotFound
from microtome.inspect import presets
from microtome.inspect.presets import DEFAULT_PRESET, INSPECT_PRESETS, MAX_GROUPS, check_groups, inspect_params
from microtome.web.jobs.inspect_jobs import Inspection, InspectRequest
from microtome.web.jobs.photo import decode
from microtome.web.present.catalog import ModelView
from microtome.web.present.inspect_page import job_url, result_data
from microtome.web.present.links import layer_url, model_brief
from microtome.web.present.state import AppState
from microtome.web.present.values import MAX_UPLOAD, MB, Accepted, Data, Redirect, Upload

DEFAULT_GROUPS = 6
# Colour photographs among microtome.data's `samples` (tests check they are there).
SAMPLES = ("chelsea", "astronaut", "coffee", "motorcycle_left", "rocket", "hubble_deep_field",
           "immunohistochemistry", "retina")


# -- checking the form (torch-free) --

def check_layers(view: ModelView, layers: str) -> list[str]:
    """Canonical ids of the comma-separated `layers` (default: `presets.default_layers`), in the
    model's order: `presets.check_layers` on the model's card, names resolved with the web's
    suggestions (`M/L`)."""
    names = [view.layer(n)["id"] for n in (layers or "").split(",") if n.strip()]  # NotFound with suggestions
    return presets.check_layers(view.card, names or None)


def _groups(groups: str) -> int:
    text = str(groups).strip() or str(DEFAULT_GROUPS)
    if not text.isdigit():
        raise MicrotomeError(f"groups must be a whole number from 1 to {MAX_GROUPS}, not {text[:20]!r}")
    return check_groups(int(text))


def _model(state: AppState, model: str) -> ModelView:
    return state.catalog.model(model)  # NotFound with suggestions


# -- data --

def status(job: Inspection) -> Data:
    """A job as JSON: its state, phase and render progress, and where to ask again."""
    req = job.request
    url = job_url(req.model, job.id)
    return {"job": job.id, "state": job.state, "phase": job.phase,
            "progress": {"done": job.done, "total": job.total}, "error": job.error,
            "elapsed_s": round((job.finished_at or time.time()) - job.started_at, 1),
            "request": {"layers": req.layers, "groups": req.groups, "preset": req.preset,
                        "weights": req.weights, "photo": f"sample:{req.sample}" if req.sample else "upload"},
            "url": url, "status_url": url + ".json"}


def _form_data(state: AppState, view: ModelView) -> Data:
    spatial = [view.layer(layer.id) for layer in presets.spatial_layers(view.card)]
    defaults = check_layers(view, "") if spatial else []
    return {"action": f"/models/{view.id}/inspect", "layers": ",".join(defaults),
            "choices": [{"id": layer["id"], "kind": layer.get("kind"), "channels": layer.get("channels"),
                         "size": list(layer.get("size") or ()), "url": layer_url(view.id, layer["id"]),
                         "default": layer["id"] in defaults} for layer in spatial],
            "groups": DEFAULT_GROUPS, "max_groups": MAX_GROUPS, "samples": list(SAMPLES),
            "presets": list(INSPECT_PRESETS), "preset": DEFAULT_PRESET, "max_upload_mb": MAX_UPLOAD // MB}


def _page(state: AppState, view: ModelView, url: str, title: str) -> Data:
    recent = [{"job": j.id, "state": j.state, "url": job_url(view.id, j.id), "layers": j.request.layers,
               "photo": f"sample:{j.request.sample}" if j.request.sample else "upload",
               "started_at": round(j.started_at, 1)} for j in state.inspector.jobs(view.id)]
    return {"page": "inspect", "title": title, "model": model_brief(view), "url": url,
            "form": _form_data(state, view), "recent": recent, "job": None, "result": None}


def form(state: AppState, model: str) -> Data | Redirect:
    """`/models/M/inspect`: the form, and this model's recent inspections."""
    view = _model(state, model)
    if view.id != model:
        return Redirect(f"/models/{view.id}/inspect")
    return _page(state, view, f"/models/{view.id}/inspect", f"Inspect a photo · {view.id}")


def _job(state: AppState, view: ModelView, job_id: str) -> Inspection:
    found = state.inspector.get(job_id)
    if found is None or found.request.model != view.id:
        raise NotFound(f"no inspection {job_id!r} of {view.id}: the server keeps the last "
                       f"{state.inspector.keep}, in memory; inspect the photo again",
                       suggestions=[f"/models/{view.id}/inspect"])
    return found


def job(state: AppState, model: str, job: str) -> Data:
    """`/models/M/inspect/JOB`: the job's progress; once done, the building blocks of the photo."""
    view = _model(state, model)
    found = _job(state, view, job)
    data = {**_page(state, view, job_url(view.id, found.id), f"Inspect a photo · {view.id}"), **status(found)}
    if found.state == "done" and found.result is not None:
        data["result"] = result_data(state.store, view.id, found.id, found.result, found.files)
    return data


def file(state: AppState, model: str, job: str, name: str) -> Response:
    """`/models/M/inspect/JOB/NAME`: a PNG of a finished job, from memory."""
    found = _job(state, _model(state, model), job)
    data = found.files.get(name)
    if data is None:
        raise NotFound(f"no image {name!r} in inspection {job}")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def start(state: AppState, model: str, image: Upload | str | None = None, sample: str = "",
          layers: str = "", groups: str = "", preset: str = "") -> Accepted:
    """`POST /models/M/inspect`: check the form, decode the photo, start the job: 202 with the
    job (JSON) or its page."""
    view = _model(state, model)
    layer_ids, k = check_layers(view, str(layers)), _groups(str(groups))
    preset = str(preset).strip() or DEFAULT_PRESET
    inspect_params(preset)  # an unknown preset is named before anything runs
    has_upload = isinstance(image, Upload) and len(image.data) > 0
    sample = str(sample).strip()
    if has_upload:
        photo, sample_name = decode(image.data), None  # 415 / 413
    elif sample:
        if sample not in SAMPLES:
            raise NotFound(f"no sample photo {sample!r}; valid: {', '.join(SAMPLES)}")
        photo, sample_name = None, sample
    else:
        raise MicrotomeError("no photo: send an image file in the form field 'image', "
                             f"or name a sample photo in 'sample' ({', '.join(SAMPLES[:3])}, ...)")
    weights = (state.store.model(view.id) or {}).get("weights") or "default"
    found = state.inspector.submit(InspectRequest(view.id, weights, layer_ids, k, preset, photo, sample_name))
    started = status(found)
    reply = {"job": started["job"], "status_url": started["status_url"], "url": started["url"]}
    return Accepted(started["url"], reply, job(state, model, found.id))
