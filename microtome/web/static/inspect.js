// microtome inspect: follow a running inspection, then swap in its result without a reload.
(function () {
  "use strict";
  var job = document.querySelector("[data-inspect-job]");
  if (!job) return;
  var page = job.dataset.page;
  if (location.pathname !== page) history.replaceState(null, "", page);  // after the POST: reloading asks again, not re-sends
  if (job.dataset.state !== "running") return;
  var text = function (sel, value) { var el = job.querySelector(sel); if (el) el.textContent = value; };
  var refill = function () {
    fetch(page, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ["inspect-job", "inspect-result", "inspect-recent"].forEach(function (id) {
          var now = document.getElementById(id), next = fresh.getElementById(id);
          if (now && next) { now.replaceWith(next); next.classList.add("fill-in"); }
        });
      });
  };
  var poll = function () {
    fetch(job.dataset.inspectJob, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        job.dataset.state = s.state || "error";
        if (s.state === "running") {
          var bar = job.querySelector("progress");
          if (bar && s.progress.total) { bar.max = s.progress.total; bar.value = s.progress.done; }
          text(".job-phase", s.phase);
          text(".job-elapsed", Math.round(s.elapsed_s) + " s");
          text(".job-steps", s.progress.done + " / " + (s.progress.total || "?") + " render steps");
          setTimeout(poll, 1500);
        } else {
          refill();  // done, or failed: the page says which
        }
      })
      .catch(function () { setTimeout(poll, 3000); });
  };
  setTimeout(poll, 1000);
})();
