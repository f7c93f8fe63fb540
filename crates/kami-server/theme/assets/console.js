// The console's progressive touches: forms with `data-confirm` ask first. Everything works
// without this script (the server checks every form anyway).
document.addEventListener("submit", function (e) {
  var f = e.target;
  var q = f && f.getAttribute && f.getAttribute("data-confirm");
  if (q && !window.confirm(q)) {
    e.preventDefault();
  }
});

// Card import with a progress bar: the file (or the pasted text) goes up as the raw body, so
// any size streams through; without this script the form posts the pasted text.
document.addEventListener("submit", function (e) {
  var f = e.target;
  if (!f || !f.hasAttribute || !f.hasAttribute("data-import") || !window.XMLHttpRequest) {
    return;
  }
  e.preventDefault();
  var file = f.querySelector("[data-import-file]");
  var text = f.querySelector("textarea[name=keys]");
  var body = file && file.files && file.files[0] ? file.files[0] : (text ? text.value : "");
  var bar = f.querySelector("[data-import-progress]");
  var status = f.querySelector("[data-import-status]");
  var loop = f.querySelector("input[name=loop]");
  var xhr = new XMLHttpRequest();
  xhr.open("POST", f.action + (loop && loop.checked ? "?loop=1" : ""));
  xhr.setRequestHeader("Content-Type", "text/plain; charset=utf-8");
  xhr.setRequestHeader("X-CSRF-Token", f.querySelector("input[name=csrf]").value);
  bar.hidden = false;
  bar.value = 0;
  xhr.upload.onprogress = function (p) {
    if (p.lengthComputable) {
      bar.value = Math.round((p.loaded / p.total) * 100);
    }
  };
  xhr.onload = function () {
    var r = {};
    try { r = JSON.parse(xhr.responseText); } catch (err) { r = {}; }
    if (xhr.status === 200) {
      bar.value = 100;
      window.location.href = window.location.pathname + "?imported=" + r.imported +
        "&duplicates=" + r.duplicates + "&rejected=" + r.rejected;
    } else {
      status.textContent = (r.error && r.error.message) || ("HTTP " + xhr.status);
      status.className = "error";
    }
  };
  xhr.onerror = function () {
    status.textContent = "network error";
    status.className = "error";
  };
  xhr.send(body);
});

// Key material from a file: the chosen file is read into its text area (the form posts the
// text area; without this script it is pasted there by hand).
document.querySelectorAll("[data-key-file]").forEach(function (label) {
  var input = label.querySelector("input[type=file]");
  var area = document.querySelector("textarea[data-key-text='" + label.getAttribute("data-key-file") + "']");
  if (!input || !area || !window.FileReader) {
    return;
  }
  label.hidden = false;
  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    if (!file) {
      return;
    }
    var reader = new FileReader();
    reader.onload = function () {
      area.value = String(reader.result || "");
    };
    reader.readAsText(file);
  });
});
