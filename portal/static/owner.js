// The owners' file uploads: the chosen file is sent as the request body itself (PUT), so
// the server streams it into the encrypted staging; no multipart form, nothing spooled.
// No build step, no library.
"use strict";

document.querySelectorAll("form[data-stream-upload]").forEach((form) => {
  const problem = document.getElementById(form.dataset.problem);
  const progress = form.querySelector(".upload-progress");
  const button = form.querySelector("button[type=submit]");

  function show(html) {
    problem.innerHTML = html; // rendered and escaped by the server (_owner_error.html)
  }

  function failed(status) {
    const box = document.createElement("p");
    box.className = "alert alert-error";
    box.setAttribute("role", "alert");
    box.textContent = `${form.dataset.failed} (${status})`;
    problem.replaceChildren(box);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) return;
    const query = new URLSearchParams({ filename: file.name });
    form.querySelectorAll("[data-param]").forEach((field) => {
      if (field.type === "checkbox") query.set(field.name, field.checked ? "true" : "false");
      else if (field.value) query.set(field.name, field.value);
    });
    show("");
    button.disabled = true;
    progress.textContent = form.dataset.sending;
    let response;
    try {
      response = await fetch(`${form.action}?${query}`, {
        method: "PUT",
        body: file,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": form.dataset.csrf, "Content-Type": "application/octet-stream" },
      });
    } catch (error) {
      failed(error.name);
      button.disabled = false;
      progress.textContent = "";
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.ok && answer.redirect) {
      window.location.assign(answer.redirect);
      return;
    }
    if (answer.html) show(answer.html);
    else failed(response.status);
    button.disabled = false;
    progress.textContent = "";
  });
});

// A page shown again with an action's error: bring the error into view.
const problem = document.querySelector(".problem");
if (problem) problem.scrollIntoView({ block: "center" });
