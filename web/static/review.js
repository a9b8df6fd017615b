// The web review's only script: served from the package, nothing from the internet.
// Keys on a part's page (← newer, → older, L the list) and the heatmap's opacity slider.
document.addEventListener("DOMContentLoaded", function () {
  var opacity = document.getElementById("opacity");
  var heat = document.getElementById("heat");
  if (opacity && heat) {
    var apply = function () { heat.style.opacity = String(opacity.value / 100); };
    opacity.addEventListener("input", apply);
    apply();
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) {
      return; // typing a note or a filter value
    }
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var link = null;
    if (event.key === "ArrowLeft" || event.key === "k") { link = document.getElementById("newer"); }
    else if (event.key === "ArrowRight" || event.key === "j") { link = document.getElementById("older"); }
    else if (event.key === "l" || event.key === "L") { link = document.querySelector(".pager a"); }
    if (link) { event.preventDefault(); window.location.href = link.href; }
  });
});
