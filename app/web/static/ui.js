// runyard web UI: a little progressive enhancement. Every page works without it.
// - a run page follows its live log (polls /ui/runs/{id}/log?after=N) and reloads once the
//   run has ended, to show its results;
// - the log search filters and highlights lines as you type;
// - buttons with data-confirm ask first.
// Text goes into the page as text nodes only, never as HTML.
"use strict";

(function () {
  const log = document.getElementById("run-log");
  const search = document.getElementById("log-search");
  const matches = document.getElementById("log-matches");
  let fullText = log ? log.textContent : "";

  function render() {
    if (!log) return;
    const term = search ? search.value.trim().toLowerCase() : "";
    if (!term || (search && search.defaultValue && term === search.defaultValue.toLowerCase())) {
      log.textContent = fullText;
      if (matches) matches.textContent = "";
      return;
    }
    const shown = fullText.split("\n").filter((line) => line.toLowerCase().includes(term));
    const fragment = document.createDocumentFragment();
    shown.slice(0, 5000).forEach((line) => {
      const lower = line.toLowerCase();
      let at = 0;
      let found = lower.indexOf(term, at);
      while (found !== -1) {
        fragment.appendChild(document.createTextNode(line.slice(at, found)));
        const mark = document.createElement("mark");
        mark.textContent = line.slice(found, found + term.length);
        fragment.appendChild(mark);
        at = found + term.length;
        found = lower.indexOf(term, at);
      }
      fragment.appendChild(document.createTextNode(line.slice(at) + "\n"));
    });
    log.replaceChildren(fragment);
    if (matches) matches.textContent = shown.length + (shown.length === 1 ? " line matches" : " lines match");
  }

  if (search && log) {
    search.addEventListener("input", render);
  }

  function atBottom(element) {
    return element.scrollHeight - element.scrollTop - element.clientHeight < 40;
  }

  if (log && log.dataset.follow) {
    let offset = parseInt(log.dataset.offset || "0", 10) || 0;
    const status = document.getElementById("run-status");
    const poll = async function () {
      try {
        const response = await fetch(log.dataset.follow + "?after=" + offset, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (response.redirected || !response.ok) return; // signed out or gone: stop
        const tail = await response.json();
        const follow = atBottom(log);
        fullText = tail.reset ? tail.text : fullText + tail.text;
        offset = tail.next;
        render();
        if (follow) log.scrollTop = log.scrollHeight;
        const label = tail.label || tail.status;
        if (status && status.textContent !== label) {
          status.textContent = label;
          status.className = "status status-" + tail.status.replace(/[^a-z0-9_-]/g, "");
        }
        if (!tail.active) {
          window.location.reload();
          return;
        }
      } catch (error) {
        // A network hiccup: try again on the next tick.
      }
      window.setTimeout(poll, 2000);
    };
    log.scrollTop = log.scrollHeight;
    window.setTimeout(poll, 2000);
  }

  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
})();
