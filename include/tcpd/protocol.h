/* The control protocol tcpd and tcpctl share: Varlink method, error and field
 * names of tcpd's own interface, and the limits both sides enforce. */
#pragma once

#define TCPD_INTERFACE "org.tcpd.Daemon"

#define TCPD_METHOD_GET_STATUS TCPD_INTERFACE ".GetStatus"
#define TCPD_METHOD_LIST_CONNECTIONS TCPD_INTERFACE ".ListConnections"
#define TCPD_METHOD_KICK TCPD_INTERFACE ".Kick"
#define TCPD_METHOD_RELOAD TCPD_INTERFACE ".Reload"
#define TCPD_METHOD_SET_LOG_LEVEL TCPD_INTERFACE ".SetLogLevel"
#define TCPD_METHOD_MONITOR TCPD_INTERFACE ".Monitor"
#define TCPD_METHOD_PREPARE_STOP TCPD_INTERFACE ".PrepareStop"
#define TCPD_METHOD_SET_BACKEND TCPD_INTERFACE ".SetBackend"

#define TCPD_ERROR_RELOAD_FAILED TCPD_INTERFACE ".ReloadFailed"
#define TCPD_ERROR_SHUTTING_DOWN TCPD_INTERFACE ".ShuttingDown"

#define VARLINK_SERVICE_INTERFACE "org.varlink.service"
#define VARLINK_METHOD_GET_INFO VARLINK_SERVICE_INTERFACE ".GetInfo"
#define VARLINK_METHOD_GET_INTERFACE_DESCRIPTION VARLINK_SERVICE_INTERFACE ".GetInterfaceDescription"

#define VARLINK_ERROR_INTERFACE_NOT_FOUND VARLINK_SERVICE_INTERFACE ".InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND VARLINK_SERVICE_INTERFACE ".MethodNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED VARLINK_SERVICE_INTERFACE ".MethodNotImplemented"
#define VARLINK_ERROR_INVALID_PARAMETER VARLINK_SERVICE_INTERFACE ".InvalidParameter"
#define VARLINK_ERROR_PERMISSION_DENIED VARLINK_SERVICE_INTERFACE ".PermissionDenied"
#define VARLINK_ERROR_EXPECTED_MORE VARLINK_SERVICE_INTERFACE ".ExpectedMore"

/* The largest message either side accepts, NUL included. A larger one gets
 * an error and the connection is closed. */
#define VARLINK_MAX_MESSAGE (64 * 1024)

/* The Varlink description of TCPD_INTERFACE, served by
 * GetInterfaceDescription; the one place the interface is written down. */
extern const char tcpd_interface_description[];
extern const char varlink_service_description[];
