/**
 * Entry point of the admin dashboard page (`/admin`, web/admin.html; docs/operations.md "Dashboard"). It shares
 * the chat app's stylesheet and formatting, and nothing else of it but the session cache it may read.
 */
import { render } from 'preact';
import { AdminApp } from './dashboard.tsx';
import { charts } from './live-chart.tsx';
import '../styles.css';
import './admin.css';

// Tests and the screenshot script read the charts' data through this handle (not pixels); the page does not use it.
(window as unknown as { synchatAdmin: { charts: typeof charts } }).synchatAdmin = { charts };
render(<AdminApp />, document.getElementById('admin')!);
