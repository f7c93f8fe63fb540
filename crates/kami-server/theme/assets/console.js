// The console's progressive touches: forms with `data-confirm` ask first. Everything works
// without this script (the server checks every form anyway).
document.addEventListener("submit", function (e) {
  var f = e.target;
  var q = f && f.getAttribute && f.getAttribute("data-confirm");
  if (q && !window.confirm(q)) {
    e.preventDefault();
  }
});
