// View of musewise.widgets.bokehjs.BokehPlot (an anywidget ES module).
//
// Each view makes sure the page has the kernel's BokehJS (asking the kernel for
// it once per page and version, shared by all views), then asks the kernel for
// the plot's current document and renders it. Afterwards it applies the kernel's
// document patches and sends the browser's document events back, as
// jupyter_bokeh's BokehView does (BSD-3, Bokeh contributors).

const LOADS = (globalThis.__musewise_bokehjs = globalThis.__musewise_bokehjs || {});
const TIMEOUT_MS = 120000;

function bokehFor(version) {
  const root = globalThis.Bokeh;
  const bokeh = root && root[version];
  if (!bokeh) return null;
  try {
    // Loaded by someone else (output_notebook)? Only use it with the plugins we need.
    bokeh.require("models/widgets/tables/data_table");
    bokeh.require("models/widgets/sliders/slider");
  } catch (err) {
    return null;
  }
  return bokeh;
}

function request(model, what) {
  const token = `${what}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      model.off("msg:custom", handler);
      reject(new Error(`the kernel did not answer (${what}): is it running?`));
    }, TIMEOUT_MS);
    function handler(msg) {
      if (!msg || msg.msg !== "musewise-reply" || msg.token !== token) return;
      clearTimeout(timer);
      model.off("msg:custom", handler);
      resolve(msg);
    }
    model.on("msg:custom", handler);
    model.send({ event: "musewise-request", what, token });
  });
}

function ensureBokeh(model, version) {
  const ready = bokehFor(version);
  if (ready) return Promise.resolve(ready);
  if (!LOADS[version]) {
    const loading = request(model, "bokehjs").then((reply) => {
      for (const source of reply.sources) {
        const script = document.createElement("script");
        script.textContent = source; // an inline classic script runs when appended
        document.head.appendChild(script);
        script.remove();
      }
      const bokeh = bokehFor(version);
      if (!bokeh) throw new Error(`BokehJS ${version} did not load`);
      return bokeh;
    });
    loading.catch(() => {
      if (LOADS[version] === loading) delete LOADS[version]; // let the next view retry
    });
    LOADS[version] = loading;
  }
  return LOADS[version];
}

function asArrayBuffer(buffer) {
  if (buffer instanceof ArrayBuffer) return buffer;
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
}

async function render({ model, el }) {
  const version = model.get("bokeh_version");
  el.classList.add("musewise-bokeh-plot");
  const note = document.createElement("div");
  note.className = "musewise-plot-loading";
  note.textContent = "loading plot…";
  el.appendChild(note);

  let closed = false;
  let doc = null;
  let bokeh = null;
  let receiver = null;
  let blocked = false;
  let pending = [];

  function sendEvent(event) {
    if (closed) return;
    if (blocked) {
      pending.push(event);
      return;
    }
    const { Serializer } = bokeh.require("core/serialization");
    const references = new Map();
    for (const m of event.document._all_models.values()) references.set(m, m.ref());
    const content = new Serializer({ references }).encode(event);
    content.event = "jsevent";
    model.send(content);
  }

  // Patches sent before this view had its document are already in that document.
  model.on("msg:custom", (msg, buffers) => {
    if (closed || doc === null || !msg || msg.msg !== "patch") return;
    receiver.consume(msg.payload != null ? msg.payload : asArrayBuffer(buffers[0]));
    const message = receiver.message;
    if (message != null && Object.keys(message.content).length > 0) {
      blocked = true;
      try {
        doc.apply_json_patch(message.content, message.buffers);
      } finally {
        blocked = false;
        const events = pending;
        pending = [];
        for (const e of events) sendEvent(e);
      }
    }
  });

  try {
    bokeh = await ensureBokeh(model, version);
    const reply = await request(model, "state");
    if (closed) return;
    const { docs_json, render_items, div } = JSON.parse(reply.bundle);
    const { Document } = bokeh.require("document");
    const { add_document_standalone } = bokeh.require("embed/standalone");
    const { Receiver } = bokeh.require("protocol/receiver");
    receiver = new Receiver();
    note.remove();
    el.insertAdjacentHTML("beforeend", div);
    const element = el.lastElementChild;
    doc = Document.from_json(Object.values(docs_json)[0]);
    for (const item of render_items) {
      const roots = {};
      for (const id in item.roots) roots[id] = element;
      await add_document_standalone(doc, element, roots);
    }
    doc.on_change((event) => sendEvent(event));
    el.dataset.musewiseRendered = "1";
  } catch (err) {
    note.className = "musewise-plot-error";
    note.textContent = `plot not shown: ${err && err.message ? err.message : err}`;
    console.error("musewise BokehPlot", err);
  }

  return () => {
    closed = true;
    if (doc !== null) doc.clear();
  };
}

export default { render };
