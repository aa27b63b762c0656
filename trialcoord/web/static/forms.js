/* trialcoord forms, as progressive enhancement: every page works without this file.
   1. After a failed form the error summary at the top of <main> takes the focus; its links move the focus to
      the field they name.
   2. A form that posts says it is busy: its button is disabled and reads "Working…" (or "Signing…" for a
      signature), aria-busy is set, and a second click does not post again.
   3. What was typed into a form is kept in this tab (sessionStorage) when the session ends, or when a form is
      posted (the post may meet an ended session), and is put back once the user has signed in again and is back
      on the page, as the same user (a shared computer: someone else's text is never shown). Passwords, and every
      field of a form that asks for one (sign-in, signatures), are never kept. */
(function () {
  "use strict";

  var DRAFTS = "trialcoord:drafts"; // {page, user, forms: {formKey: {name: [values]}}}
  var PENDING = "trialcoord:pending"; // a page whose form was posted: its drafts matter only if sign-in follows
  var RETURN = "trialcoord:return"; // the page to put the drafts back on, after signing in again
  var SKIPPED = ["password", "hidden", "file", "submit", "button", "reset", "image"];

  function here() {
    return location.pathname + location.search;
  }

  function store() {
    try {
      return window.sessionStorage;
    } catch (blocked) {
      return null; // storage turned off: nothing is kept, nothing breaks
    }
  }

  function signInPage() {
    return document.getElementById("sign-in-form");
  }

  /* 1. The error summary. */
  function summary() {
    var box = document.querySelector(".error-summary");
    if (!box) return;
    box.focus();
    box.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      var target = link && document.getElementById(decodeURIComponent(link.hash.slice(1)));
      if (!target) return;
      event.preventDefault();
      var label = target.id && document.querySelector("label[for='" + CSS.escape(target.id) + "']");
      (label || target).scrollIntoView({ block: "start" });
      target.focus({ preventScroll: true });
    });
  }

  /* 2. Busy forms. */
  function busyLabel(form, button) {
    if (button && button.dataset.busyLabel) return button.dataset.busyLabel;
    return form.querySelector("input[type=password]") ? "Signing…" : "Working…";
  }

  function onSubmit(event) {
    var form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement)) return;
    if ((form.getAttribute("method") || "get").toLowerCase() !== "post") return;
    if (form.dataset.busy === "yes") {
      event.preventDefault(); // the first post is on its way: a second click posts nothing
      return;
    }
    keepDrafts(form, false);
    var button = event.submitter || form.querySelector("button:not([type]), button[type=submit]");
    // A button that downloads a file leaves the page where it is: it must not stay busy.
    if (form.dataset.busy === "off" || (button && /^download/i.test(button.textContent.trim()))) return;
    form.dataset.busy = "yes";
    form.setAttribute("aria-busy", "true");
    if (!button) return;
    button.dataset.label = button.textContent;
    button.textContent = busyLabel(form, button);
    button.setAttribute("aria-disabled", "true");
    // Disabled only once the browser has read the form: a disabled button's name and value would not be sent.
    setTimeout(function () {
      button.disabled = true;
    }, 0);
  }

  function notBusy() {
    // Back to a page the browser kept (the back button): its forms are usable again.
    document.querySelectorAll("form[data-busy=yes]").forEach(function (form) {
      delete form.dataset.busy;
      form.removeAttribute("aria-busy");
      form.querySelectorAll("button[aria-disabled=true]").forEach(function (button) {
        button.disabled = false;
        button.removeAttribute("aria-disabled");
        if (button.dataset.label) button.textContent = button.dataset.label;
      });
    });
  }

  /* 3. Drafts. */
  function keptForm(form) {
    return (form.getAttribute("method") || "get").toLowerCase() === "post" && !form.querySelector("input[type=password]");
  }

  function formKey(form) {
    var action = form.getAttribute("action") || "";
    var same = Array.prototype.filter.call(document.forms, function (other) {
      return (other.getAttribute("action") || "") === action;
    });
    return action + "#" + same.indexOf(form);
  }

  function fieldsOf(form) {
    return Array.prototype.filter.call(form.elements, function (field) {
      return field.name && field.name !== "csrf_token" && !field.disabled && SKIPPED.indexOf(field.type) < 0;
    });
  }

  /* The form's values; null when nothing differs from what the page came with, unless `always` (a form being
     posted: what the server had put back after a failed post was typed too). */
  function values(form, always) {
    var typed = {};
    var changed = false;
    fieldsOf(form).forEach(function (field) {
      var list = typed[field.name] || (typed[field.name] = []);
      if (field.type === "checkbox" || field.type === "radio") {
        if (field.checked) list.push(field.value);
        changed = changed || field.checked !== field.defaultChecked;
      } else if (field.tagName === "SELECT") {
        Array.prototype.forEach.call(field.selectedOptions, function (option) {
          list.push(option.value);
        });
        changed = changed || Array.prototype.some.call(field.options, function (option) {
          return option.selected !== option.defaultSelected;
        });
      } else {
        list.push(field.value);
        changed = changed || field.value !== field.defaultValue;
      }
    });
    return Object.keys(typed).length && (changed || always) ? typed : null;
  }

  /* Keep what was typed: into `only` (a form being posted) or every form of the page. `returning`: the session
     is ending now, so the page is where to come back to. */
  function keepDrafts(only, returning) {
    var storage = store();
    if (!storage || signInPage()) return;
    var forms = {};
    Array.prototype.forEach.call(only ? [only] : document.forms, function (form) {
      var typed = keptForm(form) && values(form, Boolean(only));
      if (typed) forms[formKey(form)] = typed;
    });
    if (!Object.keys(forms).length) return;
    storage.setItem(DRAFTS, JSON.stringify({ page: here(), user: document.body.dataset.user, forms: forms }));
    storage.setItem(returning ? RETURN : PENDING, here());
  }

  function putBack(form, typed) {
    fieldsOf(form).forEach(function (field) {
      var list = typed[field.name];
      if (!list) return;
      if (field.type === "checkbox" || field.type === "radio") {
        field.checked = list.indexOf(field.value) >= 0;
      } else if (field.tagName === "SELECT") {
        Array.prototype.forEach.call(field.options, function (option) {
          option.selected = list.indexOf(option.value) >= 0;
        });
      } else {
        var same = fieldsOf(form).filter(function (other) {
          return other.name === field.name && SKIPPED.indexOf(other.type) < 0;
        });
        var value = list[same.indexOf(field)];
        if (value === undefined) return;
        field.value = value;
      }
      field.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  function restore() {
    var storage = store();
    if (!storage) return;
    var pending = storage.getItem(PENDING);
    var back = storage.getItem(RETURN);
    storage.removeItem(PENDING);
    var sign = signInPage();
    if (sign) {
      // The post met an ended session (or the session ended here): come back to that page after signing in.
      if (pending && !back) storage.setItem(RETURN, (back = pending));
      var next = sign.querySelector("input[name=next]");
      if (back && next && next.value === "/") next.value = back;
      return;
    }
    if (!document.body.dataset.sessionEndsIn) return; // not signed in: keep them for after the sign-in
    var drafts = JSON.parse(storage.getItem(DRAFTS) || "null");
    storage.removeItem(DRAFTS);
    storage.removeItem(RETURN);
    // Posted fine, another page or another person: forgotten.
    if (!drafts || back !== here() || drafts.page !== here() || drafts.user !== document.body.dataset.user) return;
    var restored = false;
    Array.prototype.forEach.call(document.forms, function (form) {
      var typed = keptForm(form) && drafts.forms[formKey(form)];
      if (typed) {
        putBack(form, typed);
        restored = true;
      }
    });
    var main = document.getElementById("main");
    if (!restored || !main) return;
    var note = document.createElement("p");
    note.className = "notice";
    note.id = "restored";
    note.setAttribute("role", "status");
    note.textContent = "What you typed before you were signed out is back in the form: check it, then send it.";
    main.insertBefore(note, main.firstChild);
  }

  window.trialcoord = window.trialcoord || {};
  window.trialcoord.keepDrafts = function () {
    keepDrafts(null, true);
  };

  document.addEventListener("submit", onSubmit);
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) notBusy();
  });
  document.addEventListener("DOMContentLoaded", function () {
    restore();
    summary();
  });
})();
