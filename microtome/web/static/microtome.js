// microtome: copy-link buttons, the on-demand render progress, the note form, and the jump box of a static export.
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

  // The search page of a static export: match ?q= against the exported labels (search.py's rule:
  // every word inside the label; the whole label, then whole words, then score first).
  var staticResults = document.getElementById("static-results");
  if (isStatic && staticResults) {
    var q = (new URLSearchParams(location.search).get("q") || "").trim().toLowerCase();
    var count = document.getElementById("static-count");
    if (q) {
      document.querySelectorAll("input[name=q]").forEach(function (input) { input.value = q; });
      fetch(staticResults.dataset.index).then(function (r) { return r.json(); }).then(function (units) {
        var words = q.split(/\s+/);
        var found = [];
        units.forEach(function (u) {
          var best = null;
          u.labels.forEach(function (l) {
            var text = l.label.toLowerCase();
            if (!words.every(function (w) { return text.indexOf(w) >= 0; })) return;
            var tokens = text.match(/[\w'-]+/g) || [];
            var rank = words.join(" ") === text.split(/\s+/).join(" ") ? 2 :
              (words.every(function (w) { return tokens.indexOf(w) >= 0; }) ? 1 : 0);
            if (!best || rank > best.rank || (rank === best.rank && l.score > best.score)) {
              best = { rank: rank, score: l.score, label: l.label, source: l.source };
            }
          });
          if (best) found.push({ unit: u, best: best });
        });
        found.sort(function (a, b) { return (b.best.rank - a.best.rank) || (b.best.score - a.best.score); });
        count.textContent = found.length + " unit" + (found.length === 1 ? "" : "s") + " labelled \u201c" + q + "\u201d";
        found.forEach(function (f) {
          var li = document.createElement("li");
          var a = document.createElement("a");
          a.href = f.unit.url;
          a.className = "result";
          if (f.unit.image) {
            var img = document.createElement("img");
            img.src = f.unit.image; img.width = 96; img.height = 96; img.alt = f.unit.shorthand;
            a.appendChild(img);
          }
          var n = document.createElement("span"); n.className = "n"; n.textContent = f.unit.shorthand;
          var cap = document.createElement("span"); cap.className = "cap";
          cap.textContent = f.best.label + " \u00b7 " + f.best.score + " \u00b7 " + f.best.source;
          a.appendChild(n); a.appendChild(cap); li.appendChild(a); staticResults.appendChild(li);
        });
      }).catch(function () { count.textContent = "the labels of this export could not be read"; });
    }
  }

  // The jump box of a static export: resolve MODEL/LAYER:UNIT with the exported JSON twins.
  var form = document.querySelector("form.jump");
  if (!isStatic || !form) return;
  var root = document.body.dataset.root;
  var msg = form.querySelector(".jump-msg");
  var getJSON = function (url) {
    return fetch(url).then(function (r) { if (!r.ok) throw new Error(url); return r.json(); });
  };
  var findLayer = function (model, name) {
    return getJSON(root + "models/" + model + ".json").then(function (m) {
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
      var u = parseInt(unit, 10);
      return getJSON(root + "models/" + model + "/" + layer.id + "/" + u + ".json")
        .then(function () { return path + u + "/"; });
    });
  };
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    msg.textContent = "";
    var q = form.q.value.trim().replace(/^\/?(models\/)?/, "").replace(/\/$/, "");
    var unit = null, head = q;
    var colon = q.lastIndexOf(":");
    if (colon >= 0) { head = q.slice(0, colon); unit = q.slice(colon + 1); }
    var parts = head.split("/").filter(Boolean);
    if (unit === null && parts.length === 3) { unit = parts.pop(); }
    var ctx = form.dataset.model;
    var target;
    if (parts.length === 2) {
      target = resolve(parts[0], parts[1], unit);
    } else if (parts.length === 1 && unit !== null && ctx) {
      target = resolve(ctx, parts[0], unit);
    } else if (parts.length === 1 && unit === null) {
      target = getJSON(root + "models/" + parts[0] + ".json")
        .then(function () { return "models/" + parts[0] + "/"; })
        .catch(function (e) { if (ctx) return resolve(ctx, parts[0], null); throw e; });
    } else {
      target = Promise.reject(new Error("cannot read " + q));
    }
    target.then(function (path) { location.href = root + path; })
      .catch(function () { msg.textContent = "not in this export: " + form.q.value; });
  });
})();
