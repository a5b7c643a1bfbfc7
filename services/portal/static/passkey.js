// Passkeys in the console: the page holds the server's options (JSON); this asks the browser's
// authenticator (navigator.credentials.create or .get) and posts its answer as JSON. The server
// (credentials, with the webauthn package) checks everything.
"use strict";
(() => {
  const form = document.querySelector("form[data-passkey]");
  if (!form) return;
  const unsupported = document.getElementById("passkey-unsupported");
  if (!window.PublicKeyCredential || !navigator.credentials) {
    if (unsupported) unsupported.hidden = false;
    return;
  }
  const bytes = (text) => {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
  };
  const text = (buffer) => {
    if (!buffer) return null;
    let raw = "";
    for (const b of new Uint8Array(buffer)) raw += String.fromCharCode(b);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const options = JSON.parse(document.getElementById("passkey-options").textContent);
  options.challenge = bytes(options.challenge);
  if (options.user) options.user.id = bytes(options.user.id);
  for (const list of [options.excludeCredentials, options.allowCredentials]) {
    for (const c of list || []) c.id = bytes(c.id);
  }
  const creating = form.dataset.passkey === "create";
  let done = false;
  form.addEventListener("submit", async (event) => {
    if (done) return;
    event.preventDefault();
    if (!form.reportValidity()) return;
    try {
      const credential = creating
        ? await navigator.credentials.create({ publicKey: options })
        : await navigator.credentials.get({ publicKey: options });
      const r = credential.response;
      const response = { clientDataJSON: text(r.clientDataJSON) };
      if (creating) {
        response.attestationObject = text(r.attestationObject);
        if (r.getTransports) response.transports = r.getTransports();
      } else {
        response.authenticatorData = text(r.authenticatorData);
        response.signature = text(r.signature);
        response.userHandle = text(r.userHandle);
      }
      form.querySelector("input[name=credential]").value = JSON.stringify({
        id: credential.id, rawId: text(credential.rawId), type: credential.type, response,
        clientExtensionResults: credential.getClientExtensionResults(),
        authenticatorAttachment: credential.authenticatorAttachment || undefined,
      });
    } catch (error) {
      form.querySelector("input[name=credential]").value = "";
    }
    done = true;
    form.submit();
  });
})();
