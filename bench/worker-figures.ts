// The last line a bench worker prints: its figures as one JSON line, with the seconds since it
// started and its own peak RSS (each worker is a process of its own, so the RSS is its alone).
export function printWorkerFigures(figures: Record<string, unknown>, startedMs: number): void {
  figures.seconds = (performance.now() - startedMs) / 1000;
  figures.peakRssMb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}
