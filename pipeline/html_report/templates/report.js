// The report's own script: draws the charts with vega-embed, makes tables sortable, and adds
// copy buttons. It sets document.body.dataset.ready once every chart is drawn (or failed).
(function () {
  'use strict';
  var specs = JSON.parse(document.getElementById('report-charts').textContent);
  var options = {mode: 'vega-lite', ast: true, renderer: 'svg',
                 actions: {export: true, source: false, compiled: false, editor: false}};
  var jobs = [];
  document.querySelectorAll('[data-chart]').forEach(function (el) {
    var id = el.getAttribute('data-chart');
    if (!specs[id]) { return; }
    jobs.push(vegaEmbed(el, specs[id], options).then(function () {
      el.classList.add('drawn');
    }).catch(function (error) {
      el.textContent = 'This chart could not be drawn: ' + error;
      console.error('chart ' + id + ': ' + error);
    }));
  });
  Promise.all(jobs).then(function () {
    document.body.dataset.charts = String(document.querySelectorAll('.chart.drawn').length);
    document.body.dataset.ready = '1';
  });

  function sortValue(cell, numeric) {
    var raw = cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent.trim();
    if (!numeric) { return raw.toLowerCase(); }
    var n = parseFloat(raw);
    return isNaN(n) ? -Infinity : n;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('thead th');
    heads.forEach(function (th, column) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var numeric = th.hasAttribute('data-num');
        var ascending = !th.classList.contains('asc');
        heads.forEach(function (h) { h.classList.remove('asc', 'desc'); });
        th.classList.add(ascending ? 'asc' : 'desc');
        var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return r.cells[column]; });
        rows.sort(function (a, b) {
          var x = sortValue(a.cells[column], numeric), y = sortValue(b.cells[column], numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });

  // The button sits beside the command, not in it: selecting or reading the command's text
  // gets the command alone.
  document.querySelectorAll('pre.copy').forEach(function (pre) {
    var box = document.createElement('div');
    box.className = 'copy-box';
    pre.parentNode.insertBefore(box, pre);
    box.appendChild(pre);
    var button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'copy';
    button.addEventListener('click', function () {
      var done = function () { button.textContent = 'copied'; setTimeout(function () { button.textContent = 'copy'; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(pre.textContent).then(done, function () { select(pre); });
      } else { select(pre); }
    });
    box.appendChild(button);
  });
  function select(pre) {
    var range = document.createRange();
    range.selectNodeContents(pre);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { document.execCommand('copy'); } catch (e) { /* the text stays selected */ }
  }
}());
