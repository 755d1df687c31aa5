// The console's one script: live parts of pages that work without it too.
// It reads only from the intake, and sends the session's CSRF token with what it posts.
"use strict";

function csrfToken() {
  const field = document.querySelector('input[name="csrf"]');
  return field ? field.value : "";
}

// What the page's script asks of the intake: with the token, so that a session that
// ended is told as 401 rather than sent to the sign-in page.
function ask(url) {
  return fetch(url, { credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } });
}

// A generation job's progress bar, moved until the job ends; then its download.
function followJob(section) {
  const bar = section.querySelector("progress");
  const done = section.querySelector(".job-done");
  const state = section.querySelector(".job-state");
  const download = section.querySelector(".job-download");
  async function poll() {
    const answer = await ask(section.dataset.job);
    if (!answer.ok) { state.textContent = "Unknown (" + answer.status + ")"; return; }
    const job = await answer.json();
    bar.value = job.done;
    done.textContent = String(job.done);
    state.textContent = job.state;
    if (job.state === "Completed") { download.hidden = false; return; }
    if (job.state === "Failed") { state.textContent = "Failed: " + (job.error || ""); return; }
    setTimeout(poll, 500);
  }
  poll();
}

// An import sent by XHR, so that the upload's progress shows; the report comes back as HTML.
function importWithProgress(form) {
  const box = form.parentElement;
  const progress = box.querySelector(".import-progress");
  const bar = progress.querySelector("progress");
  const percent = progress.querySelector(".import-percent");
  const report = box.querySelector(".import-report");
  form.addEventListener("submit", (event) => {
    const file = form.querySelector('input[type="file"]').files[0];
    if (!file) { return; }
    event.preventDefault();
    const ndjson = /\.(ndjson|jsonl)$/i.test(file.name);
    const request = new XMLHttpRequest();
    request.open("POST", form.dataset.import);
    request.setRequestHeader("Content-Type", ndjson ? "application/x-ndjson" : "text/csv");
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    progress.hidden = false;
    bar.value = 0;
    report.innerHTML = "";
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) {
        bar.value = Math.round((100 * e.loaded) / e.total);
        percent.textContent = bar.value + "%";
      }
    });
    request.addEventListener("load", () => {
      bar.value = 100;
      percent.textContent = "Done";
      const html = (request.getResponseHeader("Content-Type") || "").startsWith("text/html");
      if (request.status === 401) {
        report.innerHTML = '<div class="alert" role="alert">Your session ended: sign in again.</div>';
      } else if (html) {
        report.innerHTML = request.responseText;  // rendered and escaped by the intake, as the page is
      } else {
        report.innerHTML = '<div class="alert" role="alert"></div>';
        report.firstChild.textContent = "The import was refused: " + request.responseText;
      }
    });
    request.addEventListener("error", () => {
      percent.textContent = "The upload failed: the connection was lost.";
    });
    request.send(file);
  });
}

// Recent redemptions, refreshed every two seconds while "Live" is ticked.
function liveTable(table) {
  const body = table.tBodies[0];
  const live = document.getElementById("live");
  const status = document.querySelector(".live-status");
  async function refresh() {
    if (live.checked) {
      try {
        const answer = await ask(table.dataset.rows);
        if (answer.ok) {
          body.innerHTML = await answer.text();
          status.textContent = "Updated " + new Date().toLocaleTimeString();
        } else {
          status.textContent = answer.status === 401 ? "Session ended: sign in again." : "Update failed (" + answer.status + ")";
        }
      } catch (error) {
        status.textContent = "Update failed: the intake did not answer.";
      }
    }
    setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-job]").forEach(followJob);
  document.querySelectorAll("form[data-import]").forEach(importWithProgress);
  document.querySelectorAll("table[data-rows]").forEach(liveTable);
});
