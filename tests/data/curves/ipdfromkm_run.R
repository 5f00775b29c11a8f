suppressMessages({library(dplyr); library(survival)})
source("preprocess.R"); source("getIPD.R")
load("Radiationdata.rda")
str(Radiationdata)
write.csv(Radiationdata$radio, "radio_points.csv", row.names=FALSE)
write.csv(Radiationdata$radioplus, "radioplus_points.csv", row.names=FALSE)
cat("trisk", Radiationdata$trisk, "\n"); cat("nrisk.radio", Radiationdata$nrisk.radio, "\n"); cat("nrisk.radioplus", Radiationdata$nrisk.radioplus, "\n")
for (arm in c("radio","radioplus")) {
  nr <- if (arm=="radio") Radiationdata$nrisk.radio else Radiationdata$nrisk.radioplus
  pre <- preprocess(dat=Radiationdata[[arm]], trisk=Radiationdata$trisk, nrisk=nr, maxy=100)
  est <- getIPD(prep=pre, armID=0, tot.events=NULL)
  write.csv(est$IPD, paste0(arm, "_ipdfromkm_ipd.csv"), row.names=FALSE)
  write.csv(pre$preprocessdat, paste0(arm, "_ipdfromkm_preprocessed.csv"), row.names=FALSE)
  print(est$riskmat); print(est$precision)
  fit <- survfit(Surv(time, status) ~ 1, data=est$IPD)
  print(summary(fit, times=c(12, 24, 36)))
  print(quantile(fit, probs=0.5))
}
cat(R.version.string, "\n"); cat("survival", as.character(packageVersion("survival")), "dplyr", as.character(packageVersion("dplyr")), "\n")
