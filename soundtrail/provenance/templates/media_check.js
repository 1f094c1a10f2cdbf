// Marks each embedded spectrogram and player as decoded or broken, next to it and in data-media,
// so a reader sees at once when a file in the report is damaged. Allowed by its hash in the page's CSP.
(function () {
  function mark(element, ok, detail) {
    element.dataset.media = ok ? "ok" : "broken";
    var note = element.parentElement.querySelector(".media-note");
    if (note) note.textContent = ok ? detail : "could not be decoded";
  }
  document.querySelectorAll("img[data-check]").forEach(function (img) {
    function done() { mark(img, img.complete && img.naturalWidth > 0, ""); }
    if (img.complete) done(); else { img.addEventListener("load", done); img.addEventListener("error", done); }
  });
  document.querySelectorAll("audio[data-check]").forEach(function (audio) {
    function done() {
      var ok = audio.readyState >= 1 && isFinite(audio.duration) && audio.duration > 0;
      if (ok) audio.dataset.duration = audio.duration.toFixed(3);
      mark(audio, ok, ok ? audio.duration.toFixed(2) + " s" : "");
    }
    if (audio.readyState >= 1) done();
    else {
      audio.addEventListener("loadedmetadata", done);
      audio.addEventListener("error", function () { mark(audio, false, ""); });
    }
  });
})();
