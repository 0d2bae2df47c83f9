// The binary long connection over raw TCP against a live server: the shared suite in tcp-ws.case.ts.
import { runLongConnectionSuite, runTimeoutSuite } from './tcp-ws.case.ts';

runLongConnectionSuite('tcp');
runTimeoutSuite('tcp');
