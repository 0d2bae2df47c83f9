/**
 * One live line chart (Chart.js): x is seconds before now (−300 … 0), one line per series, redrawn without
 * animation on every new point. Chart.js runs under the page's CSP (`script-src 'self'`, `style-src 'self'`): it
 * draws on a canvas and sets sizes through the CSSOM, with no inline style sheet and no eval. Colours come from the
 * page's CSS variables, so a dark system theme turns the chart dark too.
 */
import { CategoryScale, Chart, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip, type ChartDataset } from 'chart.js';
import { useEffect, useRef } from 'preact/hooks';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip, Filler);

/** One line: its label (also its identity from one update to the next), points, and whether it is dashed. */
export interface Series {
  label: string;
  points: { x: number; y: number }[];
  isDashed?: boolean;
}

/** Line colours, picked by a hash of the label so that a line keeps its colour as others come and go. */
const PALETTE = ['#0f766e', '#2563eb', '#d97706', '#db2777', '#7c3aed', '#059669', '#dc2626', '#0891b2', '#65a30d', '#9333ea'];

function colourOf(label: string): string {
  let h = 0;
  for (let i = 0; i < label.length; i++) h = (h * 31 + label.charCodeAt(i)) >>> 0;
  return PALETTE[h % PALETTE.length]!;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Every chart on the page by its test id, for tests and the screenshot script (they read the data, not pixels). */
export const charts = new Map<string, Chart<'line', { x: number; y: number }[]>>();

/** A live chart: `title`, the unit on its y axis, and the series to draw now. */
export function LiveChart(props: { testId: string; title: string; unit: string; series: Series[]; yMax?: number }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<'line', { x: number; y: number }[]>>();

  useEffect(() => {
    const c = new Chart<'line', { x: number; y: number }[]>(canvas.current!, {
      type: 'line',
      data: { datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
        scales: {
          x: { type: 'linear', min: -300, max: 0, ticks: { stepSize: 60, callback: (v) => (Number(v) === 0 ? 'now' : `${Math.round(Number(v) / 60)} min`) } },
          y: { type: 'linear', beginAtZero: true, title: { display: true, text: props.unit } },
        },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12, boxHeight: 2 } }, tooltip: { enabled: true } },
      },
    });
    chart.current = c;
    charts.set(props.testId, c);
    return () => {
      charts.delete(props.testId);
      c.destroy();
    };
  }, []);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    const byLabel = new Map(c.data.datasets.map((d) => [d.label, d]));
    c.data.datasets = props.series.map((s) => {
      const d: ChartDataset<'line', { x: number; y: number }[]> = byLabel.get(s.label) ?? { label: s.label, data: [], borderColor: colourOf(s.label), backgroundColor: colourOf(s.label) };
      d.data = s.points;
      d.borderDash = s.isDashed ? [6, 4] : [];
      return d;
    });
    const text = cssVar('--muted');
    const grid = cssVar('--line');
    const scales = c.options.scales!;
    for (const axis of [scales.x!, scales.y!]) {
      axis.ticks!.color = text;
      axis.grid!.color = grid;
      if ('title' in axis && axis.title) axis.title.color = text;
    }
    if (props.yMax !== undefined) scales.y!.suggestedMax = props.yMax;
    c.options.plugins!.legend!.labels!.color = text;
    c.update('none');
  });

  return (
    <figure class="admin-chart" data-testid={props.testId}>
      <figcaption>{props.title}</figcaption>
      <div class="admin-chart-canvas">
        <canvas ref={canvas} role="img" aria-label={`${props.title}, last five minutes`} />
      </div>
    </figure>
  );
}
