// The console's only script (no inline scripts: the Content-Security-Policy forbids them).
// - Live updates: one EventSource on /events; a "change" event names topics ("messages",
//   "links"); every element whose data-live lists a topic reloads itself from data-src.
// - Countdowns: elements with data-deadline (ms since the epoch, node clock) show the time
//   left, corrected for the difference between this browser's clock and the node's.
(function () {
  "use strict";

  var skew = 0; // node clock minus browser clock, in ms

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function tick() {
    var overdue = document.body.getAttribute("data-overdue") || "overdue";
    var now = Date.now() + skew;
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Math.floor((Number(el.getAttribute("data-deadline")) - now) / 1000);
      if (left <= 0) {
        el.textContent = overdue;
        el.classList.add("overdue");
        el.classList.remove("urgent");
        return;
      }
      var h = Math.floor(left / 3600);
      var m = Math.floor((left % 3600) / 60);
      var s = left % 60;
      el.textContent = (h > 0 ? h + ":" + pad(m) : String(m)) + ":" + pad(s);
      el.classList.toggle("urgent", left < 120);
      el.classList.remove("overdue");
    });
  }

  function refresh(topic) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var topics = (el.getAttribute("data-live") || "").split(" ");
      if (topics.indexOf(topic) >= 0 && window.htmx) {
        window.htmx.ajax("GET", el.getAttribute("data-src"), { target: el, swap: "innerHTML" });
      }
    });
  }

  function connect() {
    var indicator = document.getElementById("live");
    if (!indicator || !window.EventSource) {
      return;
    }
    // The page's own marks: a change made after it was rendered is sent at once.
    var marks = document.body.getAttribute("data-marks") || "";
    var source = new EventSource("/events?since=" + encodeURIComponent(marks));
    function show(on) {
      indicator.textContent = indicator.getAttribute(on ? "data-on" : "data-off");
      indicator.classList.toggle("off", !on);
      document.body.setAttribute("data-live-connected", on ? "yes" : "no");
    }
    // A stream ends every half minute and reopens at once (the node bounds them); only a
    // connection that stays lost is shown as lost.
    var lost = null;
    source.addEventListener("open", function () {
      window.clearTimeout(lost);
      lost = null;
      show(true);
    });
    source.addEventListener("error", function () {
      if (lost === null) {
        lost = window.setTimeout(function () {
          show(false);
        }, 3000);
      }
    });
    source.addEventListener("change", function (event) {
      String(event.data).split(" ").forEach(refresh);
    });
    source.addEventListener("logout", function () {
      source.close();
      window.location.assign("/login");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var serverNow = Number(document.body.getAttribute("data-now"));
    if (serverNow) {
      skew = serverNow - Date.now();
    }
    tick();
    window.setInterval(tick, 1000);
    document.body.addEventListener("htmx:afterSwap", tick);
    connect();
  });
})();
