// microtome's activation atlas: zoom from level to level (wheel, buttons, + and - keys), a cell's
// facts on hover, class picker and comparison. Level i is drawn at 2^i times the first's size.
(function () {
  "use strict";

  function setup(atlas) {
    var view = atlas.querySelector(".atlas-view");
    var plane = atlas.querySelector(".atlas-plane");
    var levels = Array.prototype.slice.call(atlas.querySelectorAll(".atlas-level"));
    var where = atlas.querySelector(".atlas-where");
    var tip = atlas.querySelector(".atlas-tip");
    var buttons = atlas.querySelectorAll("[data-zoom]");
    var zoom = 0;

    function show(next, fx, fy) {
      next = Math.max(0, Math.min(levels.length - 1, next));
      if (next === zoom) return;
      // keep the point under (fx, fy) (fractions of the view) where it is
      var side = plane.offsetWidth, cx = (view.scrollLeft + fx * view.clientWidth) / side,
          cy = (view.scrollTop + fy * view.clientHeight) / side;
      levels[zoom].hidden = true;
      zoom = next;
      levels[zoom].hidden = false;
      plane.style.width = (100 * Math.pow(2, zoom)) + "%";
      var grid = levels[zoom].dataset.grid;
      where.textContent = "level " + (zoom + 1) + " of " + levels.length + " · " + grid + "×" + grid;
      view.scrollLeft = cx * plane.offsetWidth - fx * view.clientWidth;
      view.scrollTop = cy * plane.offsetWidth - fy * view.clientHeight;
      buttons.forEach(function (b) {
        b.disabled = (b.dataset.zoom < 0 && zoom === 0) || (b.dataset.zoom > 0 && zoom === levels.length - 1);
      });
      tip.hidden = true;
    }

    buttons.forEach(function (b) {
      b.addEventListener("click", function () { show(zoom + Number(b.dataset.zoom), 0.5, 0.5); });
    });
    show(0, 0.5, 0.5);
    buttons.forEach(function (b) { b.disabled = (b.dataset.zoom < 0) || levels.length < 2; });
    view.addEventListener("wheel", function (e) {
      if (e.deltaY === 0 || levels.length < 2) return;
      e.preventDefault();
      var box = view.getBoundingClientRect();
      show(zoom + (e.deltaY < 0 ? 1 : -1), (e.clientX - box.left) / box.width, (e.clientY - box.top) / box.height);
    }, { passive: false });
    view.addEventListener("keydown", function (e) {
      if (e.key === "+" || e.key === "=") { show(zoom + 1, 0.5, 0.5); e.preventDefault(); }
      else if (e.key === "-" || e.key === "_") { show(zoom - 1, 0.5, 0.5); e.preventDefault(); }
    });

    function hover(e) {
      var cell = e.target.closest(".atlas-cell");
      if (!cell) { tip.hidden = true; return; }
      tip.textContent = "";
      var head = document.createElement("b");
      head.textContent = "cell (" + cell.dataset.x + ", " + cell.dataset.y + "): " + cell.dataset.tip;
      tip.appendChild(head);
      [["classes", cell.dataset.classes], ["top units", cell.dataset.units]].forEach(function (row) {
        if (!row[1]) return;
        var line = document.createElement("span");
        line.textContent = row[0] + ": " + row[1];
        tip.appendChild(line);
        tip.appendChild(document.createElement("br"));
      });
      var box = atlas.getBoundingClientRect();
      tip.style.left = Math.min(e.clientX - box.left + 14, box.width - 220) + "px";
      tip.style.top = (e.clientY - box.top + 14) + "px";
      tip.hidden = false;
    }
    view.addEventListener("mousemove", hover);
    view.addEventListener("focusin", function (e) {
      var box = e.target.getBoundingClientRect();
      hover({ target: e.target, clientX: box.right, clientY: box.bottom });
    });
    view.addEventListener("mouseleave", function () { tip.hidden = true; });
  }

  document.querySelectorAll(".atlas").forEach(setup);

  // the class picker goes to a class atlas; the comparison to /compare/A/B
  document.querySelectorAll("select[data-go]").forEach(function (select) {
    select.addEventListener("change", function () { location.href = select.value; });
  });
  document.querySelectorAll("[data-compare-go]").forEach(function (button) {
    button.addEventListener("click", function () {
      var form = button.closest("form");
      var a = form.querySelector("[data-compare=a]").value, b = form.querySelector("[data-compare=b]").value;
      location.href = button.dataset.compareGo + a + "/" + b;
    });
  });
})();
