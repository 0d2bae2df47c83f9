// The binary long connection over WebSocket (`/ws`) against a live server: the shared suite in tcp-ws.case.ts.
import { runLongConnectionSuite, runTimeoutSuite } from './tcp-ws.case.ts';

runLongConnectionSuite('ws');
runTimeoutSuite('ws');
