// A page of a PDF rendered with pdf.js, on which the signer draws the visible
// signature's box. The box is kept in PDF user-space points (origin bottom left),
// converted from CSS pixels through the page's viewport, so rotation, CropBox
// offsets and the display scale are all accounted for.
import { html, useState, useEffect, useRef } from "../ui.js";

let pdfjs = null;
async function loadPdfjs() {
  if (!pdfjs) {
    pdfjs = await import("../../vendor/pdf.min.mjs");
    pdfjs.GlobalWorkerOptions.workerSrc = new URL("../../vendor/pdf.worker.min.mjs", import.meta.url).href;
  }
  return pdfjs;
}

const PREVIEW_WIDTH_PX = 560;

/** `bytes` (ArrayBuffer), `pageNumber` (1-based); `onBox([x1, y1, x2, y2])` in PDF points. */
export function PagePreview({ bytes, pageNumber, box, onBox, onError }) {
  const canvasRef = useRef(null);
  const viewportRef = useRef(null);
  const [drag, setDragState] = useState(null); // {x0, y0, x1, y1} in CSS px while drawing
  // Pointer events can come faster than re-renders: the handlers read the ref.
  const dragRef = useRef(null);
  const setDrag = (next) => {
    dragRef.current = next;
    setDragState(next);
  };
  const [ready, setReady] = useState(false);

  useEffect(() => {
    let cancelled = false;
    let task = null;
    let loading = null;
    (async () => {
      const lib = await loadPdfjs();
      // A copy: pdf.js transfers the buffer to its worker.
      loading = lib.getDocument({ data: bytes.slice(0), isEvalSupported: false });
      const page = await (await loading.promise).getPage(pageNumber);
      if (cancelled) return;
      const unscaled = page.getViewport({ scale: 1 });
      const viewport = page.getViewport({ scale: PREVIEW_WIDTH_PX / unscaled.width });
      const canvas = canvasRef.current;
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.floor(viewport.width * ratio);
      canvas.height = Math.floor(viewport.height * ratio);
      canvas.style.width = `${viewport.width}px`;
      canvas.style.height = `${viewport.height}px`;
      viewportRef.current = viewport;
      task = page.render({ canvas, viewport, transform: ratio === 1 ? null : [ratio, 0, 0, ratio, 0, 0] });
      await task.promise;
      if (!cancelled) setReady(true);
    })().catch((error) => {
      if (!cancelled && error?.name !== "RenderingCancelledException") onError(error);
    });
    return () => {
      cancelled = true;
      task?.cancel();
      loading?.destroy();
    };
  }, [bytes, pageNumber]);

  // CSS px relative to the canvas, in the viewport's units (the canvas may be shrunk by CSS).
  const pointAt = (event) => {
    const rect = canvasRef.current.getBoundingClientRect();
    const viewport = viewportRef.current;
    const scale = viewport.width / rect.width;
    const clamp = (v, max) => Math.min(Math.max(v, 0), max);
    return [clamp((event.clientX - rect.left) * scale, viewport.width), clamp((event.clientY - rect.top) * scale, viewport.height)];
  };
  const down = (event) => {
    if (!ready) return;
    event.currentTarget.setPointerCapture?.(event.pointerId);
    const [x, y] = pointAt(event);
    setDrag({ x0: x, y0: y, x1: x, y1: y });
  };
  const move = (event) => {
    if (!dragRef.current) return;
    const [x, y] = pointAt(event);
    setDrag({ ...dragRef.current, x1: x, y1: y });
  };
  const up = () => {
    const drag = dragRef.current;
    if (!drag) return;
    const viewport = viewportRef.current;
    const [ax, ay] = viewport.convertToPdfPoint(drag.x0, drag.y0);
    const [bx, by] = viewport.convertToPdfPoint(drag.x1, drag.y1);
    setDrag(null);
    if (Math.abs(drag.x1 - drag.x0) < 4 || Math.abs(drag.y1 - drag.y0) < 4) return; // a click, not a box
    const round = (v) => Math.round(v * 100) / 100;
    onBox([round(Math.min(ax, bx)), round(Math.min(ay, by)), round(Math.max(ax, bx)), round(Math.max(ay, by))]);
  };

  // The box to show, in CSS px: the one being drawn, else the chosen one converted back.
  let shown = null;
  if (drag) {
    shown = [Math.min(drag.x0, drag.x1), Math.min(drag.y0, drag.y1), Math.max(drag.x0, drag.x1), Math.max(drag.y0, drag.y1)];
  } else if (box && ready && viewportRef.current) {
    const [x1, y1] = viewportRef.current.convertToViewportPoint(box[0], box[1]);
    const [x2, y2] = viewportRef.current.convertToViewportPoint(box[2], box[3]);
    shown = [Math.min(x1, x2), Math.min(y1, y2), Math.max(x1, x2), Math.max(y1, y2)];
  }
  const boxRef = useRef(null);
  useEffect(() => {
    const element = boxRef.current;
    if (!element || !shown) return;
    const rect = canvasRef.current.getBoundingClientRect();
    const scale = rect.width / viewportRef.current.width;
    Object.assign(element.style, {
      left: `${shown[0] * scale}px`,
      top: `${shown[1] * scale}px`,
      width: `${(shown[2] - shown[0]) * scale}px`,
      height: `${(shown[3] - shown[1]) * scale}px`,
    });
  });
  return html`<div class="preview" data-testid="page-preview" data-ready=${ready ? "true" : "false"}
      onPointerDown=${down} onPointerMove=${move} onPointerUp=${up}>
    <canvas ref=${canvasRef} role="img" aria-label=${`Page ${pageNumber}: drag to draw the signature's box`}></canvas>
    ${shown && html`<div class="box" ref=${boxRef} data-testid="drawn-box"></div>`}
  </div>`;
}
