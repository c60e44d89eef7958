// System Backup page: follows the running job (the panel with data-job-url). It polls the
// job's JSON, moves the progress bar, writes the live log, and when the job ends comes back
// to the page with ?job=<id>, which reports how it ended. Forms marked data-busy say so while
// their (slow) post runs. Without this file the page still works: reload it to see progress.
// (CSP allows no inline scripts.)
(function () {
  "use strict";

  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button");
      if (button) {
        button.textContent = form.getAttribute("data-busy");
        button.setAttribute("aria-disabled", "true");
      }
    });
  });

  var panel = document.getElementById("running-job");
  if (!panel) { return; }
  var url = panel.getAttribute("data-job-url");
  var page = panel.getAttribute("data-page-url");
  var bar = document.getElementById("job-progress");
  var message = document.getElementById("job-message");
  var percent = document.getElementById("job-percent");
  var log = document.getElementById("job-log");
  var POLL_MS = 700;

  // One line per step: "Backing up users (2,000 of 9,000 rows)" replaces "Backing up users (1,000 …)".
  function step(line) { return line.split(" (")[0]; }

  function lastLine() { return log.lastElementChild ? log.lastElementChild.textContent : null; }

  function addLine(line) {
    if (!line) { return; }
    var last = lastLine();
    if (last === line) { return; }
    if (last !== null && step(last) === step(line)) {
      log.lastElementChild.textContent = line;
    } else {
      var item = document.createElement("li");
      item.textContent = line;
      log.appendChild(item);
    }
    log.scrollTop = log.scrollHeight;
  }

  function showLog(job) {
    // The server keeps the log of the jobs it runs itself; for a job run elsewhere, the messages seen here.
    if (!(job.log && job.log.length)) { addLine(job.message); return; }
    var same = log.children.length === job.log.length && job.log.every(function (line, i) {
      return log.children[i].textContent === line;
    });
    if (same) { return; }
    log.textContent = "";
    job.log.forEach(function (line) {
      var item = document.createElement("li");
      item.textContent = line;
      log.appendChild(item);
    });
    log.scrollTop = log.scrollHeight;
  }

  function show(job) {
    var fraction = job.status === "succeeded" ? 1 : job.progress;
    bar.value = fraction;
    bar.textContent = Math.round(fraction * 100) + "%";
    percent.textContent = Math.round(fraction * 100) + "%";
    message.textContent = (job.message || job.status) +
      (job.status === "queued" ? " (waiting for " + Math.round(job.waited_seconds || 0) + " s)" : "");
    showLog(job);
  }

  function finish(job) {
    window.location.assign(page + "?job=" + encodeURIComponent(job.id));
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 404) { window.location.assign(page); return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (body) {
        if (!body) { return; }
        var job = body.job;
        show(job);
        if (job.status === "succeeded" || job.status === "failed") {
          finish(job);
        } else {
          window.setTimeout(poll, POLL_MS);
        }
      })
      .catch(function () { window.setTimeout(poll, 3 * POLL_MS); });
  }

  window.setTimeout(poll, POLL_MS / 2);
})();
