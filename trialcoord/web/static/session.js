/* The inactivity sign-out, announced: a dialog shortly before the session ends offers "Stay signed in" (which
   asks the server to count this as activity); if nobody answers, what was typed is kept in this tab (forms.js)
   and the page signs out, so that what it shows is not left on an unattended screen. After signing in again the
   user is back on the page with their text.

   The server says on <body> how long the session lasts at most from this answer (data-session-ends-in, seconds:
   the inactivity limit less the time the server may wait before it records activity) and how early to warn
   (data-session-warn). Tabs of one session share the latest deadline (localStorage), so activity in one tab
   keeps the others from signing out. Without this file the server still ends the session on its own. */
(function () {
  "use strict";

  var SHARED = "trialcoord:session-deadline";
  var body = document.body;
  var endsIn = Number(body.dataset.sessionEndsIn);
  var warnBefore = Number(body.dataset.sessionWarn) || 0;
  var dialog = document.getElementById("session-warning");
  var signOut = document.getElementById("sign-out-form");
  if (!endsIn || !dialog || !signOut) return;

  var deadline = 0;
  var warnTimer = null;
  var endTimer = null;
  var ticker = null;

  function shared() {
    try {
      return Number(window.localStorage.getItem(SHARED)) || 0;
    } catch (blocked) {
      return 0;
    }
  }

  function share(value) {
    try {
      if (value > shared()) window.localStorage.setItem(SHARED, String(value));
    } catch (blocked) {
      /* a tab of its own, then */
    }
  }

  function schedule(until) {
    deadline = until;
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    var left = deadline - Date.now();
    warnTimer = setTimeout(warn, Math.max(0, left - warnBefore * 1000));
    endTimer = setTimeout(end, Math.max(0, left));
  }

  function words(seconds) {
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    var parts = [];
    if (minutes) parts.push(minutes + (minutes === 1 ? " minute" : " minutes"));
    if (rest || !minutes) parts.push(rest + (rest === 1 ? " second" : " seconds"));
    return parts.join(" ");
  }

  function say() {
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    dialog.querySelector(".session-left").textContent = words(left);
  }

  function warn() {
    if (shared() > deadline) return schedule(shared()); // another tab was active meanwhile
    say();
    if (!dialog.open) dialog.showModal();
    clearInterval(ticker);
    ticker = setInterval(say, 1000);
  }

  function calm() {
    clearInterval(ticker);
    if (dialog.open) dialog.close();
  }

  function end() {
    if (shared() > deadline) {
      calm();
      return schedule(shared());
    }
    calm();
    if (window.trialcoord && window.trialcoord.keepDrafts) window.trialcoord.keepDrafts();
    [["why", "inactivity"], ["next", location.pathname + location.search]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      signOut.appendChild(input);
    });
    signOut.submit();
  }

  function stay(event) {
    event.preventDefault();
    var form = event.target;
    var token = form.querySelector("input[name=csrf_token]");
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": token ? token.value : "" },
      body: new URLSearchParams(new FormData(form)),
    })
      .then(function (answer) {
        if (!answer.ok) throw new Error("the session has ended");
        return answer.json();
      })
      .then(function (extended) {
        calm();
        var until = Date.now() + extended.ends_in * 1000;
        share(until);
        schedule(until);
      })
      .catch(end);
  }

  dialog.querySelector("form").addEventListener("submit", stay);
  dialog.addEventListener("cancel", function (event) {
    event.preventDefault(); // Escape does not make the warning go away unanswered
  });
  window.addEventListener("storage", function (event) {
    if (event.key === SHARED && shared() > deadline) {
      calm();
      schedule(shared());
    }
  });
  document.addEventListener("visibilitychange", function () {
    // Timers sleep with the computer: a deadline that passed meanwhile is acted on at once.
    if (document.visibilityState === "visible" && Date.now() >= deadline) end();
  });

  var until = Date.now() + endsIn * 1000;
  share(until);
  schedule(until);
})();
