/**
 * The AWS resources of one cluster, as an ordered table (kubeadm's certificate list, for EC2).
 *
 * Each row (rows/*.ts) knows how to find its resources by tag, which changes bring them to the
 * desired state (each a sentence plus the call that makes it), which DryRun probes prove the
 * permissions, and how to remove them. `up` walks the rows in order; `destroy` walks them
 * backwards, which is the dependency order (instances before the security group and subnet, the
 * gateway before the VPC). Nothing is created twice: every create follows a lookup of its tags.
 */
import type { Row } from './table.ts';
import { keyPairRow, securityGroupRow } from './rows/access.ts';
import { vpcRow, internetGatewayRow, subnetRow, routeTableRow } from './rows/network.ts';
import { imageRow, instancesRow, runningRow, sourceDestRow } from './rows/instances.ts';
import { elasticIpRow } from './rows/address.ts';

export { applySteps, emptyFound, type Found, type Probe, type Row, type Session, type Step } from './table.ts';
export { existingRules } from './rows/access.ts';
export { instanceFor, refreshInstances } from './rows/instances.ts';

/**
 * The table, in creation order. `destroy` walks it backwards: the address and the instances go
 * first (waiting until they are terminated), then what they used, the VPC last but one, and the
 * key pair last.
 */
export const ROWS: readonly Row[] = [
  keyPairRow,
  vpcRow,
  internetGatewayRow,
  subnetRow,
  routeTableRow,
  securityGroupRow,
  imageRow,
  instancesRow,
  runningRow,
  sourceDestRow,
  elasticIpRow,
];
