// The inside view of the served page and the web export: a text's characters coloured by one
// unit's value (a layer's cell state c, hidden state h, or its forget, input, output gate or
// candidate g) after reading each, the five likeliest next characters on hover, and the units
// whose cell state follows something visible in the text best (the features and Pearson
// correlation of charlstm/explore/probe.py's text_features and find_cells).
//
// insideView(root, source, currentText) builds the view into `root`. source.trace(text, layer,
// quantity) resolves to {layers, units: H, values: Float32Array (T x H), row t the values after
// reading the text's character t (after NFC), top: T lists of [character, probability], the
// five likeliest characters after it}. currentText() gives the text the view starts from.
"use strict";

const INSIDE_QUANTITIES = [["c", "cell state c"], ["h", "hidden state h"],
  ["f", "forget gate"], ["i", "input gate"], ["o", "output gate"], ["g", "candidate g"]];

// per character, after reading it: probe.py's text_features
function insideFeatures(chars) {
  const names = ["in_quotes", "bracket_depth", "column", "indentation", "line_start"];
  const f = Object.fromEntries(names.map((n) => [n, new Float64Array(chars.length)]));
  let quote = null, depth = 0, column = 0, indent = 0, leading = true;
  chars.forEach((ch, t) => {
    if (ch === "\n") {
      quote = null; column = 0; indent = 0; leading = true;
      f.line_start[t] = 1;
    } else {
      column += 1;
      if (leading && ch === " ") indent += 1;
      else leading = false;
      if (quote === null && (ch === "'" || ch === '"')) {
        quote = ch;
        f.in_quotes[t] = 1;
      } else if (quote !== null) {
        f.in_quotes[t] = 1;
        if (ch === quote) quote = null;
      } else if ("([{".includes(ch)) depth += 1;
      else if (")]}".includes(ch)) depth = Math.max(depth - 1, 0);
    }
    f.bracket_depth[t] = depth;
    f.column[t] = column;
    f.indentation[t] = indent;
  });
  return f;
}

// Pearson correlation over t of values[t, u] (T x H) and feature[t], for every unit u
function insideCorrelations(values, T, H, feature) {
  const mean = new Float64Array(H);
  for (let t = 0; t < T; t++) for (let u = 0; u < H; u++) mean[u] += values[t * H + u] / T;
  let fMean = 0;
  for (let t = 0; t < T; t++) fMean += feature[t] / T;
  const dot = new Float64Array(H), vv = new Float64Array(H);
  let ff = 0;
  for (let t = 0; t < T; t++) {
    const df = feature[t] - fMean;
    ff += df * df;
    for (let u = 0; u < H; u++) {
      const dv = values[t * H + u] - mean[u];
      dot[u] += dv * df;
      vv[u] += dv * dv;
    }
  }
  return Array.from(dot, (d, u) => (vv[u] * ff > 0 ? d / Math.sqrt(vv[u] * ff) : 0));
}

// a value as a colour: gates (0..1) around 1/2, c through tanh, h and g as they are;
// blue above the middle, red below, as strong as far from it
function insideColour(value, quantity) {
  const v = quantity === "c" ? Math.tanh(value) : "fio".includes(quantity) ? 2 * value - 1 : value;
  const a = Math.min(Math.abs(v), 1).toFixed(3);
  return v >= 0 ? `rgba(30, 100, 230, ${a})` : `rgba(220, 40, 40, ${a})`;
}

function insideView(root, source, currentText) {
  root.innerHTML = `
    <h2>Inside the model</h2>
    <p class="about">Each character coloured by one unit after reading it (blue: high, red:
    low); hover a character for the five likeliest next ones. Propose finds the units whose
    cell state follows quotes, brackets, indentation or the position in the line.</p>
    <textarea id="inside-text" rows="4" placeholder="generate, or paste a text"></textarea>
    <div class="row">
      <label>Layer <select id="inside-layer"></select></label>
      <label>Unit <input id="inside-unit" type="number" min="0" step="1" value="0"></label>
      <label>Value <select id="inside-quantity">${INSIDE_QUANTITIES.map(
        ([q, label]) => `<option value="${q}">${label}</option>`).join("")}</select></label>
      <button id="inside-show">Colour the text</button>
      <button id="inside-propose">Propose units</button>
      <span id="inside-status"></span>
    </div>
    <div id="inside-proposals"></div>
    <div id="inside-view" data-done="false"
         style="white-space: pre-wrap; font-family: ui-monospace, monospace; line-height: 1.6"></div>`;
  const $ = (id) => root.querySelector("#" + id);
  const text = () => $("inside-text").value || currentText();
  const status = (s) => { $("inside-status").textContent = s; };

  // the layer picker's choices, once the model's number of layers is known
  function listLayers(layers, chosen) {
    if ($("inside-layer").options.length !== layers) {
      $("inside-layer").innerHTML = Array.from({ length: layers },
        (_, l) => `<option value="${l}">${l}</option>`).join("");
    }
    $("inside-layer").value = String(chosen);
  }

  async function show() {
    $("inside-view").dataset.done = "false";
    const layer = Number($("inside-layer").value || 0), unit = Number($("inside-unit").value);
    const quantity = $("inside-quantity").value;
    status("reading…");
    const read = text(), trace = await source.trace(read, layer, quantity);
    const chars = Array.from(read.normalize("NFC"));  // as typed: unknown ones too
    listLayers(trace.layers, layer);
    $("inside-unit").max = trace.units - 1;
    if (!(unit >= 0 && unit < trace.units)) {
      status(`unit must be 0 to ${trace.units - 1}`);
      return;
    }
    const view = $("inside-view");
    view.textContent = "";
    chars.forEach((ch, t) => {
      const span = document.createElement("span");
      const value = trace.values[t * trace.units + unit];
      span.textContent = ch === "\n" ? "↵\n" : ch;
      span.dataset.value = String(value);
      span.dataset.top = JSON.stringify(trace.top[t]);
      span.style.background = insideColour(value, quantity);
      span.title = `${quantity} = ${value.toFixed(4)}; next: ` + trace.top[t].map(
        ([c, p]) => `${JSON.stringify(c)} ${(100 * p).toFixed(1)}%`).join(", ");
      view.appendChild(span);
    });
    view.dataset.done = "true";
    status(`layer ${layer}, unit ${unit}, ${quantity}`);
  }

  async function propose() {
    $("inside-proposals").dataset.done = "false";
    status("looking for units…");
    const read = text(), first = await source.trace(read, 0, "c");
    listLayers(first.layers, Number($("inside-layer").value || 0));
    const features = insideFeatures(Array.from(read.normalize("NFC")));
    const best = {};
    for (let layer = 0; layer < first.layers; layer++) {
      const trace = layer ? await source.trace(read, layer, "c") : first;
      for (const [name, feature] of Object.entries(features)) {
        insideCorrelations(trace.values, trace.chars.length, trace.units, feature)
          .forEach((r, unit) => {
            if (!best[name] || Math.abs(r) > Math.abs(best[name].correlation)) {
              best[name] = { feature: name, layer, unit, correlation: r };
            }
          });
      }
    }
    const list = $("inside-proposals");
    list.textContent = "";
    for (const m of Object.values(best)) {
      const button = document.createElement("button");
      button.textContent = `${m.feature}: layer ${m.layer}, unit ${m.unit} (r = ${m.correlation.toFixed(2)})`;
      Object.assign(button.dataset, { feature: m.feature, layer: m.layer, unit: m.unit,
                                      correlation: m.correlation });
      button.onclick = () => {
        $("inside-layer").value = String(m.layer);
        $("inside-unit").value = String(m.unit);
        $("inside-quantity").value = "c";
        show();
      };
      list.appendChild(button);
    }
    list.dataset.done = "true";
    status("");
  }

  $("inside-layer").innerHTML = '<option value="0">0</option>';
  $("inside-show").onclick = () => show().catch((e) => status(String(e)));
  $("inside-propose").onclick = () => propose().catch((e) => status(String(e)));
  return { show, propose };
}
