// Every page: times in the reader's local time (UTC in the tooltip), focus on the result of
// the last action, and a confirmation dialog for forms marked data-confirm. Pages work without
// it: times then read in UTC, and a form posts without asking. (CSP allows no inline scripts.)
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // <time data-local datetime="ISO">: local "YYYY-MM-DD HH:MM", UTC in the title.
  document.querySelectorAll("time[data-local]").forEach(function (node) {
    var moment = new Date(node.getAttribute("datetime"));
    if (isNaN(moment.getTime())) { return; }
    var utc = moment.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    node.textContent = moment.getFullYear() + "-" + pad(moment.getMonth() + 1) + "-" + pad(moment.getDate()) +
      " " + pad(moment.getHours()) + ":" + pad(moment.getMinutes());
    node.title = utc;
  });

  // The result of the last action: an element marked data-focus, else the first message.
  var result = document.querySelector("[data-focus]") || document.querySelector("main .flash");
  if (result) {
    if (!result.hasAttribute("tabindex")) { result.setAttribute("tabindex", "-1"); }
    result.focus();
  }

  // form[data-confirm] (its question; data-confirm-title and data-confirm-button word the dialog):
  // ask in the page's <dialog id="confirm-dialog"> before posting.
  var dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") { return; }
  var title = document.getElementById("confirm-dialog-title");
  var text = document.getElementById("confirm-dialog-text");
  var yes = document.getElementById("confirm-dialog-yes");
  var pending = null;

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.confirmed === "yes") { return; }
      event.preventDefault();
      pending = form;
      title.textContent = form.getAttribute("data-confirm-title") || "Are you sure?";
      text.textContent = form.getAttribute("data-confirm");
      yes.textContent = form.getAttribute("data-confirm-button") || "Confirm";
      dialog.returnValue = "";
      dialog.showModal();
    });
  });

  dialog.addEventListener("close", function () {
    var form = pending;
    pending = null;
    if (!form) { return; }
    if (dialog.returnValue === "confirm") {
      form.dataset.confirmed = "yes";
      form.requestSubmit();
    } else {
      var button = form.querySelector("button");
      if (button) { button.focus(); }
    }
  });
})();
