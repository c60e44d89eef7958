// System Backup page: asks before destructive form posts (forms with data-confirm),
// and follows the running job: polls its JSON state, moves the progress bar, and
// reloads the page when the job ends. (CSP allows no inline scripts.)
(function () {
  "use strict";

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  var panel = document.getElementById("running-job");
  if (!panel) { return; }
  var url = panel.getAttribute("data-job-url");
  var bar = document.getElementById("job-progress");
  var message = document.getElementById("job-message");

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (body) {
        var job = body.job;
        bar.value = job.progress;
        bar.textContent = Math.round(job.progress * 100) + "%";
        message.textContent = (job.message || job.status) +
          (job.status === "queued" ? " (waiting for " + Math.round(job.waited_seconds || 0) + " s)" : "");
        if (job.status === "succeeded" || job.status === "failed") {
          window.location.reload();
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }

  window.setTimeout(poll, 500);
})();
