// prmonitor's board, live: the page follows the change feed (Server-Sent
// Events) and, when something it shows may have changed, fetches itself
// again and swaps the parts marked data-live-region. Without JavaScript the
// pages are whole; with it they never reload.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  var indicator = document.getElementById("live");
  if (!url || !window.EventSource || !window.fetch) {
    return;
  }
  var KINDS = ["pull_request", "check_run", "status", "merge_group", "required_checks", "repository", "reset"];
  var pending = null;
  var inFlight = false;
  var again = false;

  function show(state, words) {
    if (indicator) {
      indicator.className = "live " + state;
      indicator.textContent = words;
    }
  }

  // One refresh at a time; events during one cause exactly one more.
  function refresh() {
    pending = null;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) {
          // Logged out, or the server is away: say so rather than show stale data as live.
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var regions = document.querySelectorAll("[data-live-region]");
        for (var i = 0; i < regions.length; i++) {
          var old = regions[i];
          var next = old.id && fresh.getElementById(old.id);
          if (next && next.innerHTML !== old.innerHTML) {
            next.classList.add("fresh");
            old.replaceWith(next);
          }
        }
        document.body.setAttribute("data-refreshed", String(Date.now()));
        show("on", "live");
      })
      .catch(function () {
        show("off", "not updating");
      })
      .then(function () {
        inFlight = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  // Events come in bursts (a backfill commits many rows): one refresh per burst.
  function schedule() {
    if (pending === null) {
      pending = window.setTimeout(refresh, 200);
    }
  }

  var source = new EventSource(url);
  source.onopen = function () {
    show("on", "live");
  };
  source.onerror = function () {
    // EventSource reconnects by itself and resumes with Last-Event-ID.
    show("off", "reconnecting…");
  };
  KINDS.forEach(function (kind) {
    source.addEventListener(kind, schedule);
  });
})();
