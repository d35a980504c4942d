#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int c,char**v){int s=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(6001)};inet_pton(AF_INET,v[1],&a.sin_addr);
 if(connect(s,(void*)&a,sizeof a))return 1;int one=1;setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&one,4);char b[64]={0};int n=atoi(v[2]);
 double t0=now();for(int i=0;i<n;i++){if(send(s,b,64,0)!=64)return 2;int g=0;while(g<64){int r=recv(s,b+g,64-g,0);if(r<=0)return 3;g+=r;}}
 printf("rtt avg %.1f us\n",(now()-t0)/n*1e6);close(s);return 0;}
