// microtome: copy-link buttons, the on-demand render progress, the note form, and the jump box of a
// static export (its resolver is `window.microtome.jump`, which the export's search page also uses).
(function () {
  "use strict";
  var isStatic = document.body.dataset.static === "true";

  // Copy a unit's permanent link (the page's own address in a static export).
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var link = isStatic ? location.href.split("#")[0] : new URL(button.dataset.copy, location.origin).href;
      var done = function () { button.textContent = "copied"; setTimeout(function () { button.textContent = "copy link"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(link).then(done, function () { window.prompt("Copy this link:", link); });
      } else {
        window.prompt("Copy this link:", link);
      }
    });
  });

  // On-demand rendering: poll the job every second; each time the unit has more artifacts
  // stored (a technique finished), swap in the page's sections and facts; when it is done, the last time.
  var job = document.querySelector("[data-job]");
  if (job && (job.dataset.state === "queued" || job.dataset.state === "running")) {
    var stateText = job.querySelector(".job-state");
    var seen = parseInt(job.dataset.artifacts || "0", 10);
    var poll = function () {
      fetch(job.dataset.job, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          job.dataset.state = s.state;
          var grew = typeof s.artifacts === "number" && s.artifacts !== seen;
          if (grew) seen = s.artifacts;
          if (s.state === "queued" || s.state === "running") {
            if (stateText) stateText.textContent = s.state + (s.position ? ", " + s.position + " ahead in the queue" : "");
            if (grew) refill(false);
            setTimeout(poll, 1000);
          } else if (s.state === "error") {
            job.textContent = "Rendering this unit failed: " + (s.error || "unknown error");
            refill(false);  // what was stored before the failure
          } else {
            refill(true);
          }
        })
        .catch(function () { setTimeout(poll, 2000); });
    };
    var swap = function (fresh, id) {
      var part = fresh.getElementById(id);
      var old = document.getElementById(id);
      if (part && old) {
        old.replaceWith(part);
        part.classList.add("fill-in");
      }
    };
    var refill = function (last) {
      fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          swap(fresh, "unit-body");
          swap(fresh, "unit-facts");
          if (!last) return;
          var next = fresh.querySelector("[data-job]");
          if (next && (next.dataset.state === "queued" || next.dataset.state === "running")) {
            setTimeout(poll, 1000);  // another technique was queued meanwhile
          } else {
            job.remove();
          }
        });
    };
    setTimeout(poll, 1000);
  }

  // Notes: the form sends its text with the token as `Authorization: Bearer`, then reloads.
  document.querySelectorAll("form[data-notes]").forEach(function (noteForm) {
    noteForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = noteForm.querySelector(".note-msg");
      var body = new URLSearchParams();
      body.set("text", noteForm.text.value);
      fetch(noteForm.action, { method: "POST", body: body,
        headers: { Accept: "application/json", Authorization: "Bearer " + noteForm.token.value } })
        .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
        .then(function (res) {
          if (res[0] === 201) { location.reload(); } else { out.textContent = res[1].error || ("error " + res[0]); }
        })
        .catch(function () { out.textContent = "could not send the note"; });
    });
  });

  // The jump box of a static export: resolve MODEL/LAYER:UNIT with the exported JSON twins.
  if (!isStatic) return;
  var root = document.body.dataset.root;
  var getJSON = function (url) {
    return fetch(url).then(function (r) { if (!r.ok) throw new Error(url); return r.json(); });
  };
  var index = null;
  var hasModel = function (model) {  // the site's index lists its models: no request for a name that is not one
    index = index || getJSON(root + "index.json");
    return index.then(function (d) {
      if (!d.models.some(function (m) { return m.id === model; })) throw new Error("no model " + model);
    });
  };
  var findLayer = function (model, name) {
    return hasModel(model).then(function () { return getJSON(root + "models/" + model + ".json"); }).then(function (m) {
      var hit = m.layers.filter(function (l) {
        return l.id === name || l.module === name || (l.aliases || []).indexOf(name) >= 0;
      })[0];
      if (!hit) throw new Error("no layer " + name + " in " + model);
      return hit;
    });
  };
  var resolve = function (model, name, unit) {
    return findLayer(model, name).then(function (layer) {
      var path = "models/" + model + "/" + layer.id + "/";
      if (unit === null) return path;
      if (!/^\d+$/.test(unit)) throw new Error("no unit " + unit);
      var u = parseInt(unit, 10);
      return getJSON(root + "models/" + model + "/" + layer.id + "/" + u + ".json")
        .then(function () { return path + u + "/"; });
    });
  };
  // Where `text` leads (MODEL, MODEL/LAYER, MODEL/LAYER:UNIT, or LAYER[:UNIT] inside model `ctx`):
  // a Promise of a path below the site's root, rejected when the export has no such page.
  var jump = function (text, ctx) {
    var q = text.trim().replace(/^\/?(models\/)?/, "").replace(/\/$/, "");
    var unit = null, head = q;
    var colon = q.lastIndexOf(":");
    if (colon >= 0) { head = q.slice(0, colon); unit = q.slice(colon + 1); }
    var parts = head.split("/").filter(Boolean);
    if (unit === null && parts.length === 3) { unit = parts.pop(); }
    if (parts.length === 2) return resolve(parts[0], parts[1], unit);
    if (parts.length === 1 && unit !== null && ctx) return resolve(ctx, parts[0], unit);
    if (parts.length === 1 && unit === null) {
      return hasModel(parts[0]).then(function () { return "models/" + parts[0] + "/"; })
        .catch(function (e) { if (ctx) return resolve(ctx, parts[0], null); throw e; });
    }
    return Promise.reject(new Error("cannot read " + q));
  };
  window.microtome = { jump: jump, root: root };

  var form = document.querySelector("form.jump");
  if (!form) return;
  var msg = form.querySelector(".jump-msg");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    msg.textContent = "";
    jump(form.q.value, form.dataset.model)
      .then(function (path) { location.href = root + path; })
      .catch(function () { msg.textContent = "not in this export: " + form.q.value; });
  });
})();
