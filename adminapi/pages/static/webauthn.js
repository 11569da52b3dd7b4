// Passkeys and security keys (WebAuthn): the one script of the pages, since browsers offer
// WebAuthn to scripts only. A form marked data-webauthn="register" or "login" carries the
// options from the server (data-options); on submit, the browser asks the authenticator, and
// its answer is sent in the form's hidden "credential" field. No library, no other origin.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  function create(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    options.excludeCredentials = withIds(options.excludeCredentials);
    return navigator.credentials.create({ publicKey: options }).then(function (credential) {
      var response = credential.response;
      return {
        id: credential.id, rawId: toText(credential.rawId), type: credential.type,
        response: {
          clientDataJSON: toText(response.clientDataJSON),
          attestationObject: toText(response.attestationObject),
          transports: response.getTransports ? response.getTransports() : []
        },
        clientExtensionResults: credential.getClientExtensionResults()
      };
    });
  }

  function get(options) {
    options.challenge = toBytes(options.challenge);
    options.allowCredentials = withIds(options.allowCredentials);
    return navigator.credentials.get({ publicKey: options }).then(function (credential) {
      var response = credential.response;
      return {
        id: credential.id, rawId: toText(credential.rawId), type: credential.type,
        response: {
          clientDataJSON: toText(response.clientDataJSON),
          authenticatorData: toText(response.authenticatorData),
          signature: toText(response.signature),
          userHandle: toText(response.userHandle)
        },
        clientExtensionResults: credential.getClientExtensionResults()
      };
    });
  }

  function setUp(form) {
    var status = form.querySelector("[data-webauthn-status]");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      var notice = document.querySelector("[data-webauthn-unsupported]");
      if (notice) { notice.hidden = false; }
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
      });
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (status) { status.hidden = true; }
      var options = JSON.parse(form.dataset.options);
      var ask = form.dataset.webauthn === "register" ? create : get;
      ask(options).then(function (answer) {
        form.elements.credential.value = JSON.stringify(answer);
        form.submit();
      }, function () {
        if (status) {
          status.textContent = form.dataset.failed;
          status.hidden = false;
        }
      });
    });
  }

  document.querySelectorAll("form[data-webauthn]").forEach(setUp);
})();
