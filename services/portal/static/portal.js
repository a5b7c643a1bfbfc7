// Progressive help only: every page works without it, and the server checks everything again.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The agreement: "Confirm" does nothing until "I Accept" is ticked.
  const agreement = document.querySelector("form[data-agreement]");
  if (agreement) {
    const box = agreement.querySelector("#accept");
    const confirm = agreement.querySelector("#confirm");
    const sync = () => { confirm.disabled = !box.checked; };
    box.addEventListener("change", sync);
    sync();
  }
  // The new password: the rules, marked as the person types.
  const form = document.querySelector("form[data-password-rules]");
  if (form) {
    const name = (form.dataset.username || "").toLowerCase();
    const first = form.querySelector("#new_password");
    const second = form.querySelector("#confirm_password");
    const rules = {
      min: (p) => [...p].length >= 15,
      max: (p) => [...p].length <= 64 && p.length > 0,
      name: (p) => p.length > 0 && !(name.length >= 4 && p.toLowerCase().includes(name))
        && !p.toLowerCase().includes("pasrr portal") && !p.toLowerCase().includes("rekey"),
      varied: (p) => new Set([...p]).size >= 4,
      same: (p) => p.length > 0 && p === second.value,
    };
    const check = () => {
      for (const [rule, ok] of Object.entries(rules)) {
        const item = form.querySelector(`[data-rule="${rule}"]`);
        const met = ok(first.value);
        item.classList.toggle("met", met);
        item.classList.toggle("unmet", !met);
      }
    };
    first.addEventListener("input", check);
    second.addEventListener("input", check);
  }
});
// "Let's try it out", a sign-in request, a call: wait for the phone without reloading the page.
// Without JavaScript the page's "Check again" / "Next" button asks the server instead.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("[data-push-status], [data-wait-status]");
  if (!status || status.classList.contains("alert")) return;
  const url = status.dataset.pushStatus || status.dataset.waitStatus;
  const poll = async () => {
    try {
      const answer = await (await fetch(url, { credentials: "same-origin" })).json();
      if (answer.next && answer.state !== "pending") { window.location.assign(answer.next); return; }
      if (answer.state && answer.state !== "pending") {
        // A sign-in that ended: the server's page for it offers what can be done next.
        const ended = document.querySelector("form[data-when-ended=submit]");
        if (ended) { ended.submit(); return; }
        status.textContent = answer.message || answer.state;
        status.className = "alert";
        return;
      }
    } catch (e) { /* keep waiting; the Next button still works */ }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
});
