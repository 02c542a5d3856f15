// anfang console: the live alarm list (Server-Sent Events) and a tone for new severe alarms.
// Forms work without this script; htmx (vendored beside it) makes them update in place.
(function () {
  "use strict";
  var seen = null;

  function tone(severity) {
    try {
      var ctx = new (window.AudioContext || window.webkitAudioContext)();
      var osc = ctx.createOscillator();
      osc.frequency.value = severity === "critical" ? 880 : 660;
      osc.connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + (severity === "critical" ? 0.6 : 0.25));
    } catch (e) { /* no audio before the first click: the colour still shows it */ }
  }

  function notice(box) {
    var items = box.querySelectorAll("article.alarm");
    var now = {};
    for (var i = 0; i < items.length; i++) {
      var el = items[i];
      now[el.id] = seen !== null && seen[el.id] ? seen[el.id] : Date.now();
      el.setAttribute("data-seen-at", String(now[el.id])); // when this desk first showed it
      var sev = el.getAttribute("data-severity");
      if (seen !== null && !seen[el.id] && (sev === "critical" || sev === "high")) { tone(sev); }
    }
    seen = now;
  }

  function live(box) {
    notice(box);
    var source = new EventSource(box.getAttribute("data-stream"));
    source.addEventListener("alarms", function (ev) {
      var active = document.activeElement;
      if (active && box.contains(active) && active.tagName === "INPUT" && active.value) { return; } // typing a note
      if (box.querySelector(".htmx-request")) { return; } // an action or evidence on its way in; a new stream resends
      var opened = {}; // evidence a guard opened (a capture, a track) stays open across live updates
      var panels = box.querySelectorAll(".evidence-open");
      for (var i = 0; i < panels.length; i++) {
        if (panels[i].querySelector("#track-detail, #capture-detail")) { opened[panels[i].id] = panels[i].innerHTML; }
      }
      box.innerHTML = ev.data;
      for (var id in opened) {
        var el = document.getElementById(id);
        if (el) { el.innerHTML = opened[id]; }
      }
      if (window.htmx) { window.htmx.process(box); }
      notice(box);
      box.setAttribute("data-updated", String(Date.now()));
    });
    document.body.addEventListener("htmx:afterSwap", function () { notice(box); });
    source.onopen = function () { document.getElementById("live-state").textContent = "live"; };
    source.onerror = function () { document.getElementById("live-state").textContent = "reconnecting"; };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-stream]");
    if (box) { live(box); }
  });
})();
