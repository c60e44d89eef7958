// The restore form of the System Backup page. The form works without this file;
// with it, Preview runs in the page, so the form keeps its input (password
// included) for the Restore that follows, and needs no typed confirmation (a
// preview writes nothing). It also keeps the two sources exclusive, disables the
// merge-only conflict policy for Replace, and moves focus to each result.
(function () {
  "use strict";
  var form = document.getElementById("restore-form");
  if (!form) { return; }
  var preview = document.getElementById("restore-preview");
  var listed = document.getElementById("restore-filename");
  var upload = document.getElementById("restore-file");
  var onConflict = document.getElementById("restore-on-conflict");
  var COUNTS = ["inserted", "updated", "skipped", "deleted"];
  // As templates/backup/_restore_result.html words them.
  var ACCOUNT_CHANGES = [["new_admins", "New administrator accounts"], ["admin_granted", "Made administrators"],
                         ["admin_revoked", "No longer administrators"], ["password_changed", "Password changed"],
                         ["deactivated", "Deactivated"], ["removed", "Removed"]];

  function mode() {
    var checked = form.querySelector("input[name=mode]:checked");
    return checked ? checked.value : "";
  }

  // The server refuses on_conflict for Replace; a disabled field is not sent.
  function syncMode() { onConflict.disabled = mode() !== "merge"; }

  function element(tag, text) {
    var node = document.createElement(tag);
    if (text !== undefined) { node.textContent = String(text); }
    return node;
  }

  function show(className, nodes) {
    preview.textContent = "";
    preview.className = className;
    nodes.forEach(function (node) { preview.appendChild(node); });
    preview.hidden = false;
    preview.focus();
  }

  function showError(message) {
    show("restore-outcome restore-failed", [element("p", message)]);
  }

  function summary(result) {
    var parts = [];
    Object.keys(result.tables).forEach(function (table) {
      var counts = result.tables[table];
      var changed = COUNTS.filter(function (k) { return counts[k]; })
        .map(function (k) { return counts[k] + " " + k; });
      if (changed.length) { parts.push(table + ": " + changed.join(", ")); }
    });
    return "Preview (" + result.mode + "): " + (parts.join("; ") || "nothing to change") +
      ". Nothing was changed; Restore would do this.";
  }

  function countsTable(result) {
    var table = element("table");
    table.className = "grid restore-counts";
    var head = table.createTHead().insertRow();
    ["Table", "Inserted", "Updated", "Skipped", "Deleted"].forEach(function (title, i) {
      var cell = element("th", title);
      cell.scope = "col";
      if (i) { cell.className = "num"; }
      head.appendChild(cell);
    });
    var body = table.createTBody();
    Object.keys(result.tables).forEach(function (name) {
      var row = body.insertRow();
      row.insertCell().textContent = name;
      COUNTS.forEach(function (k) {
        var cell = row.insertCell();
        cell.className = "num";
        cell.textContent = String(result.tables[name][k]);
      });
    });
    return table;
  }

  function accountChanges(result) {
    var changes = result.security_changes || {};
    var list = element("ul");
    list.className = "security-changes";
    ACCOUNT_CHANGES.forEach(function (pair) {
      var names = changes[pair[0]] || [];
      if (names.length) { list.appendChild(element("li", pair[1] + ": " + names.join(", "))); }
    });
    return list.children.length ? [element("p", "Account changes:"), list] : [];
  }

  function showPreview(result) {
    var nodes = [element("p", summary(result)), countsTable(result)];
    var reasons = result.skipped_reasons || [];
    if (reasons.length) {
      var list = element("ul");
      reasons.forEach(function (r) {
        list.appendChild(element("li", r.table + ": " + r.count + " skipped, " + r.reason +
          " (ids " + r.ids.join(", ") + (r.count > r.ids.length ? ", …" : "") + ")"));
      });
      nodes.push(list);
    }
    nodes = nodes.concat(accountChanges(result));
    if (result.neutralised_tokens) {
      nodes.push(element("p", result.neutralised_tokens + " password-reset and e-mail-verification links " +
        "from the archive would be stored as already used."));
    }
    show("restore-outcome", nodes);
  }

  function runPreview(button) {
    var data = new FormData(form);
    data.append("dry_run", "1");
    if (!data.get("confirm")) { data.set("confirm", mode()); }
    button.disabled = true;
    show("restore-outcome", [element("p", "Previewing…")]);
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
                         headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json()
          .catch(function () { return { error: "The server answered HTTP " + response.status + "." }; })
          .then(function (body) {
            if (response.ok && body.preview) { showPreview(body.preview); }
            else { showError(body.error || "The preview failed (HTTP " + response.status + ")."); }
          });
      })
      .catch(function () { showError("The server could not be reached; try again."); })
      .then(function () { button.disabled = false; });
  }

  // The typed confirmation is for the restore: a preview may go without it.
  var previewButton = form.querySelector("button[name=dry_run]");
  if (previewButton) { previewButton.formNoValidate = true; }

  listed.addEventListener("change", function () { if (listed.value) { upload.value = ""; } });
  upload.addEventListener("change", function () { if (upload.files.length) { listed.value = ""; } });
  form.addEventListener("change", function (event) { if (event.target.name === "mode") { syncMode(); } });
  syncMode();

  form.addEventListener("submit", function (event) {
    if (!listed.value && !upload.files.length) {
      event.preventDefault();
      showError("Choose a listed backup or upload a backup file.");
      listed.focus();
      return;
    }
    var button = event.submitter;
    if (button && button.name === "dry_run") {
      event.preventDefault();
      runPreview(button);
      return;
    }
    // Restore is an ordinary form post: the server starts the job and the page follows it.
    if (button) { button.textContent = "Starting the restore…"; }
  });
})();
